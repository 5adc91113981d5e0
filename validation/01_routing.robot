*** Settings ***
Documentation     Hospitals' studies go whole to one AI worker of the right pool, and the
...               results go home, to the hospital that sent the study and to no one else.
Library           WolfPACS.py
Library           Collections
Suite Setup       Start the hospital network
Suite Teardown    Stop everything

*** Test Cases ***
A CT study arrives whole at exactly one worker of its pool
    [Tags]    UR-001
    ${study}=    Hospital stockholm sends a CT study of 20 instances
    The study ${study} arrives whole at exactly one worker of pool stroke

The rest of a study follows it to the same worker
    [Tags]    UR-002
    ${study}=    Hospital stockholm sends a CT study of 5 instances
    ${first}=    The study ${study} arrives whole at exactly one worker of pool stroke
    Hospital stockholm sends 5 more instances of study ${study}
    Hospital stockholm sends 5 more instances of study ${study}
    ${then}=    The study ${study} arrives whole at exactly one worker of pool stroke
    Should Be Equal    ${first}    ${then}
    Worker ${first} holds 15 instances of study ${study}

New studies go to the least loaded worker of the pool first
    [Documentation]    gpu-a is given three open studies more than gpu-b (gpu-b drained meanwhile):
    ...    the next new studies go to gpu-b until the two are even again, whatever the tests
    ...    before left open (the counts are read from `ctl workers`); round robin would not.
    [Tags]    UR-004
    Ctl    drain    gpu-b
    FOR    ${n}    IN RANGE    3
        ${study}=    Hospital gothenburg sends a CT study of 2 instances
        ${w}=    The study ${study} arrives whole at exactly one worker of pool stroke
        Should Be Equal    ${w}    gpu-a    a drained worker takes no new study
    END
    Ctl    resume    gpu-b
    ${more}=    Open studies of gpu-a over gpu-b
    Should Be True    ${more} >= 3
    FOR    ${n}    IN RANGE    ${more}
        ${study}=    Hospital gothenburg sends a CT study of 2 instances
        ${w}=    The study ${study} arrives whole at exactly one worker of pool stroke
        Should Be Equal    ${w}    gpu-b    gpu-b has fewer open studies: it takes the new study
    END
    ${study}=    Hospital gothenburg sends a CT study of 2 instances
    ${w}=    The study ${study} arrives whole at exactly one worker of pool stroke
    Should Be Equal    ${w}    gpu-a    even again: the tie goes to the first by name
    [Teardown]    Ctl    resume    gpu-b

Each series goes to the pool its hospital's rules choose
    [Tags]    UR-005
    ${study}=    A new study UID
    ${s}=    Hospital stockholm sends a MR series "DWI" of 3 instances in study ${study}
    ${s}=    Hospital stockholm sends a CT series "CT Chest 1mm" of 3 instances in study ${study}
    ${s}=    Hospital stockholm sends a CT series "HEAD" of 3 instances in study ${study}
    ${s}=    Hospital stockholm sends a CT series "LUNG window" of 2 instances in study ${study}
    ${stroke}=    The series "DWI" of study ${study} arrives whole at one worker of pool stroke
    ${head}=    The series "HEAD" of study ${study} arrives whole at one worker of pool stroke
    Should Be Equal    ${stroke}    ${head}
    ${lung}=    The series "CT Chest 1mm" of study ${study} arrives whole at one worker of pool lung
    ${window}=    The series "LUNG window" of study ${study} arrives whole at one worker of pool lung
    Should Be Equal    ${lung}    ${window}

A report that a rule discards is answered success and goes nowhere
    [Tags]    UR-006
    ${study}=    A new study UID
    ${statuses}=    Hospital stockholm sends a SR series "Report" of 2 instances in study ${study}
    Should Be Equal    ${statuses}    ${{["0x0000", "0x0000"]}}
    ${s}=    Hospital stockholm sends a CT series "HEAD" of 2 instances in study ${study}
    The series "HEAD" of study ${study} arrives whole at one worker of pool stroke
    Wait until metric    wolfpacs_discarded_instances_total    2    client=stockholm
    No worker holds the series "Report" of study ${study}

A series no rule takes is refused when the hospital has no default pool
    [Tags]    UR-007    0xA703    0x0000
    ${study}=    A new study UID
    ${statuses}=    Hospital malmo sends a CT series "HEAD" of 1 instances in study ${study}
    Should Be Equal    ${statuses}    ${{["0xA703"]}}
    ${statuses}=    Hospital malmo sends a MR series "DWI" of 2 instances in study ${study}
    Should Be Equal    ${statuses}    ${{["0x0000", "0x0000"]}}
    The series "DWI" of study ${study} arrives whole at one worker of pool stroke
    Nothing refused is kept: not in the spool, not in dead/, not at a worker

A worker's result goes home to the PACS of the hospital that sent the study
    [Tags]    UR-009
    ${study}=    Hospital stockholm sends a CT study of 3 instances
    ${worker}=    The study ${study} arrives whole at exactly one worker of pool stroke
    ${status}=    Worker ${worker} sends a result for study ${study}
    Should Be Equal    ${status}    0x0000
    The result arrives at the PACS of stockholm and at no other

A result for a study no hospital sent is refused and kept in dead
    [Tags]    UR-010    0xC003
    ${study}=    A new study UID
    ${status}=    Worker gpu-a sends a result for study ${study}
    Should Be Equal    ${status}    0xC003
    A dead letter for study ${study} says unknown_study

A worker that was never given a study cannot send results for it
    [Tags]    UR-011    0xC003
    ${study}=    Hospital stockholm sends a CT study of 2 instances
    ${worker}=    The study ${study} arrives whole at exactly one worker of pool stroke
    ${other}=    Set Variable If    "${worker}" == "gpu-a"    gpu-b    gpu-a
    ${status}=    Worker ${other} sends a result for study ${study}
    Should Be Equal    ${status}    0xC003
    ${status}=    Worker lung-a sends a result for study ${study}
    Should Be Equal    ${status}    0xC003
    A dead letter for study ${study} says not_your_study

The same study UID from two hospitals is two studies, each result goes home
    [Tags]    UR-012    UR-009
    ${study}=    A new study UID
    ${s}=    Hospital stockholm sends a CT series "HEAD" of 2 instances in study ${study}
    ${s}=    Hospital gothenburg sends a CT series "BRAIN" of 2 instances in study ${study}
    ${a}=    The series "HEAD" of study ${study} arrives whole at one worker of pool stroke
    ${b}=    The series "BRAIN" of study ${study} arrives whole at one worker of pool stroke
    Should Not Be Equal    ${a}    ${b}    a worker holding the UID for one hospital is skipped
    ${answer}=    Ctl    study    ${study}
    Length Should Be    ${answer}    2
    ${status}=    Worker ${a} sends a result for study ${study}
    Should Be Equal    ${status}    0x0000
    The result arrives at the PACS of stockholm and at no other
    ${status}=    Worker ${b} sends a result for study ${study}
    Should Be Equal    ${status}    0x0000
    The result arrives at the PACS of gothenburg and at no other

Strangers are rejected with the matching reason
    [Tags]    UR-013
    ${answer}=    Echo from stranger to the outside port with called NOT_A_CLIENT and calling STHLM_CT
    Should Contain    ${answer}    Called AE Title Not Recognized
    Should Contain    ${answer}    Permanent
    ${answer}=    Echo from stranger to the outside port with called STHLM_SECRET and calling INTRUDER
    Should Contain    ${answer}    Calling AE Title Not Recognized
    ${answer}=    Echo from stranger to the inside port with called WOLFPACS and calling INTRUDER
    Should Contain    ${answer}    Calling AE Title Not Recognized

A hospital is let in only from the addresses its allow list names
    [Tags]    UR-013
    [Documentation]    127.0.0.2 stands in for another host.
    Restart WolfPACS with hospital malmo allowed only from 127.0.0.2/32
    ${answer}=    Hospital malmo echoes from address 127.0.0.2
    Should Be Equal    ${answer}    ok
    ${answer}=    Hospital malmo echoes from address 127.0.0.1
    Should Be Equal    ${answer}    rejected: result 1, source 1, reason 1
    ${log}=    Node log
    Should Contain    ${log}    address 127.0.0.1 is not in client malmo's allow list

Both ports answer C-ECHO
    [Tags]    UR-020
    Hospital stockholm can echo
    ${answer}=    Echo from gpu-a to the inside port with called WOLFPACS and calling GPU_A
    Should Be Equal    ${answer}    ok

The worker receives the bytes the hospital sent, in every transfer syntax
    [Tags]    UR-019
    ${through}=    Hospital gothenburg sends one instance in each transfer syntax
    ${direct}=    The same instances sent straight to a PACS give the same datasets
    Wait Until Keyword Succeeds    30 s    0.2 s    Workers hold exactly    ${direct}

A hospital's secret AE title is never shown in full
    [Tags]    UR-014
    ${clients}=    Ctl    clients
    Should Not Contain    ${{json.dumps($clients)}}    STHLM_SECRET
    ${code}    ${export}    ${err}=    Run ctl    config    --export
    Should Be Equal As Integers    ${code}    0
    Should Not Contain    ${export}    STHLM_SECRET
    ${answer}=    Echo from stranger to the outside port with called STHLM_SECRAT and calling STHLM_CT
    ${log}=    Node log
    Should Not Contain    ${log}    STHLM_SECRET
    Should Not Contain    ${log}    STHLM_SECRAT
    Should Contain    ${log}    ST…AT
    ${audit}=    Audit log
    Should Not Be Empty    ${audit}
    Should Not Contain    ${{json.dumps($audit)}}    STHLM_SECRET

*** Keywords ***
Open studies of gpu-a over gpu-b
    [Documentation]    How many open studies gpu-a has more than gpu-b, as `ctl workers` says.
    ${workers}=    Ctl    workers
    ${open}=    Evaluate    {w["name"]: w["open_studies"] for w in $workers}
    ${more}=    Evaluate    $open["gpu-a"] - $open["gpu-b"]
    RETURN    ${more}

Workers hold exactly
    [Arguments]    ${expected}
    ${held}=    Datasets received by the workers
    FOR    ${uid}    IN    @{expected}
        Dictionary Should Contain Key    ${held}    ${uid}
        Should Be Equal    ${held}[${uid}]    ${expected}[${uid}]
    END
