*** Settings ***
Documentation     The operator changes a running node without a service window: drain, resume,
...               move, retry, rules, through `wolfpacs ctl` and the shell; every change persists.
...               Backoffs here are long and probes off, so that only `retry` brings a worker back.
Library           WolfPACS.py
Test Setup        Start the hospital network    retry_initial=30    retry_max=60    probe_interval=0
Test Teardown     Stop everything

*** Test Cases ***
A drained worker takes no new studies but finishes its open ones; resumed, it takes them again
    [Tags]    UR-027    UR-028
    ${open}=    Hospital gothenburg sends a CT study of 3 instances
    ${w}=    The study ${open} arrives whole at exactly one worker of pool stroke
    Ctl    drain    ${w}
    Hospital gothenburg sends 3 more instances of study ${open}
    Worker ${w} holds 6 instances of study ${open}
    ${new}=    Hospital gothenburg sends a CT study of 3 instances
    ${other}=    The study ${new} arrives whole at exactly one worker of pool stroke
    Should Not Be Equal    ${w}    ${other}
    ${new2}=    Hospital gothenburg sends a CT study of 3 instances
    ${other2}=    The study ${new2} arrives whole at exactly one worker of pool stroke
    Should Be Equal    ${other}    ${other2}    a draining worker gets no new study, even the least loaded
    Ctl    resume    ${w}
    ${state}=    Worker state of ${w}
    Should Be Equal    ${state}    active
    ${new3}=    Hospital gothenburg sends a CT study of 3 instances
    ${back}=    The study ${new3} arrives whole at exactly one worker of pool stroke
    Should Be Equal    ${w}    ${back}    resumed, the least loaded worker takes the new study

Moving a worker's studies hands its queue to another worker and says what it already had
    [Tags]    UR-029
    ${study}=    Hospital stockholm sends a CT study of 4 instances
    ${w}=    The study ${study} arrives whole at exactly one worker of pool stroke
    ${other}=    Set Variable If    "${w}" == "gpu-a"    gpu-b    gpu-a
    Worker ${w} goes down
    Hospital stockholm sends 3 more instances of study ${study}
    ${moved}=    Ctl    move    ${w}    --to    ${other}
    Should Be Equal    ${moved}[moved_studies]    ${{[$study]}}
    Should Be Equal As Integers    ${moved}[queued_moved]    3
    Should Be Equal As Integers    ${moved}[already_delivered][${study}]    4
    Worker ${other} holds 3 instances of study ${study}

After a repair the operator has a worker tried at once
    [Tags]    UR-030
    Worker gpu-a goes down
    Worker gpu-b goes down
    ${study}=    Hospital gothenburg sends a CT study of 3 instances
    Wait until ctl    any(w["last_error"] and w["queued"] for w in r)    workers
    Worker gpu-a comes back
    Worker gpu-b comes back
    Ctl    retry    gpu-a
    Ctl    retry    gpu-b
    The study ${study} arrives whole at exactly one worker of pool stroke

A drain survives a restart
    [Tags]    UR-031
    Ctl    drain    gpu-b
    Restart WolfPACS
    ${state}=    Worker state of gpu-b
    Should Be Equal    ${state}    drained

Rules change at runtime, a wrong rule is refused with the reason, and changes survive a restart
    [Tags]    UR-008    UR-031
    ${code}    ${out}    ${err}=    Run ctl    add-rule    malmo    --match    Modalty\=CT    --pool    lung
    Should Be Equal As Integers    ${code}    1
    Should Contain    ${err}    did you mean 'Modality'
    Ctl    add-rule    malmo    --match    Modality\=CT    --pool    lung
    Restart WolfPACS
    ${rules}=    Ctl    rules    malmo
    Length Should Be    ${rules}[rules]    2
    ${study}=    A new study UID
    ${statuses}=    Hospital malmo sends a CT series "HEAD" of 2 instances in study ${study}
    Should Be Equal    ${statuses}    ${{["0x0000", "0x0000"]}}
    The series "HEAD" of study ${study} arrives whole at one worker of pool lung

Scripts tell the outcome of ctl by its exit code
    [Tags]    UR-032
    ${workers}=    Ctl    workers
    Length Should Be    ${workers}    4
    ${code}    ${out}    ${err}=    Run ctl    drain    nobody
    Should Be Equal As Integers    ${code}    1
    ${code}    ${out}    ${err}=    Run ctl    frobnicate
    Should Be Equal As Integers    ${code}    2
    ${code}    ${out}    ${err}=    Run wolfpacs    ctl    --socket    /nonexistent/control.sock    workers
    Should Be Equal As Integers    ${code}    3

The operator sees the tree, the workers and the studies in the shell
    [Tags]    UR-033
    ${study}=    Hospital stockholm sends a CT study of 2 instances
    The study ${study} arrives whole at exactly one worker of pool stroke
    ${config}=    Config file
    ${code}    ${out}    ${err}=    Run wolfpacs    shell    --config    ${config}    stdin=tree\nworkers\nstudies\n
    Should Be Equal As Integers    ${code}    0    ${err}
    Should Contain    ${out}    router
    Should Contain    ${out}    sender:gpu-a
    Should Contain    ${out}    ${study}

A purge forgets nothing younger than retention_days, and a dry run says what it would do
    [Tags]    UR-050
    ${study}=    Hospital stockholm sends a CT study of 2 instances
    The study ${study} arrives whole at exactly one worker of pool stroke
    ${plan}=    Ctl    purge    --dry-run
    Should Be True    ${plan}[dry_run]
    Should Be Equal As Integers    ${plan}[studies]    0
    ${done}=    Ctl    purge
    Should Be Equal As Integers    ${done}[studies]    0
    ${still}=    Ctl    study    ${study}
    Should Not Be Empty    ${still}
