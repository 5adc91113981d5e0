*** Settings ***
Documentation     The operator changes a running node without a service window: drain, resume,
...               move, retry, rules, through `wolfpacs ctl` and the shell; every change persists.
...               Backoffs here are long (300 s, ten times any wait of these suites) and probes
...               off, so that only `retry` or `resume` brings a worker back.
Library           WolfPACS.py
Test Setup        Start the hospital network    retry_initial=300    retry_max=300    probe_interval=0
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
    ${queued}=    Wait until ctl    [w for w in r if w["last_error"] and w["queued"]]    workers
    Worker gpu-a comes back
    Worker gpu-b comes back
    ${worker}=    Set Variable    ${queued}[0][name]
    ${other}=    Set Variable If    "${worker}" == "gpu-a"    gpu-b    gpu-a
    Ctl    retry    ${other}
    Ctl    retry    ${worker}
    Within 5 s the study ${study} arrives whole at exactly one worker of pool stroke

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

A purge forgets studies idle past retention_days, never a queued one, and a dry run says what it would forget
    [Documentation]    The node stamps each study with the time of its last activity; a study is
    ...    aged here by writing that time 40 days back in the state database
    ...    (`studies.last_activity_at`, with `sqlite3` while the node is stopped): waiting
    ...    out `retention_days` (a day at least) is no test. The node's own purge runs a minute
    ...    after it starts; `ctl purge` runs it now.
    [Tags]    UR-050
    ${old}=    Hospital stockholm sends a CT study of 2 instances
    The study ${old} arrives whole at exactly one worker of pool stroke
    ${young}=    Hospital stockholm sends a CT study of 2 instances
    The study ${young} arrives whole at exactly one worker of pool stroke
    Worker gpu-a goes down
    Worker gpu-b goes down
    ${queued}=    Hospital stockholm sends a CT study of 2 instances
    Wait until ctl    [q for q in r if q["instances"] == 2]    queues
    Stop WolfPACS
    The study ${old} was last active 40 days ago
    The study ${queued} was last active 40 days ago
    Start WolfPACS
    ${plan}=    Ctl    purge    --dry-run
    Should Be True    ${plan}[dry_run]
    Should Be Equal As Integers    ${plan}[studies]    1    the idle study, not the queued one
    Ctl    study    ${old}
    ${done}=    Ctl    purge
    Should Be Equal As Integers    ${done}[studies]    1
    ${code}    ${out}    ${err}=    Run ctl    study    ${old}
    Should Be Equal As Integers    ${code}    1    the idle study should be forgotten
    Should Contain    ${err}    no study
    Ctl    study    ${young}
    Ctl    study    ${queued}
    Worker gpu-a comes back
    Worker gpu-b comes back
    Ctl    retry    gpu-a
    Ctl    retry    gpu-b
    The study ${queued} arrives whole at exactly one worker of pool stroke
