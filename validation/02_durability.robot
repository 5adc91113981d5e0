*** Settings ***
Documentation     What a hospital was told is stored is never lost: through workers that are
...               down, a SIGTERM, a kill -9 of the node and a restart. (Power cuts: the pytest
...               LazyFS suite, integration/test_powerloss.py.)
Library           WolfPACS.py
Test Setup        Start the hospital network
Test Teardown     Stop everything

*** Test Cases ***
A study acknowledged while every worker of its pool is down is delivered when one comes back
    [Tags]    UR-015
    Worker gpu-a goes down
    Worker gpu-b goes down
    ${study}=    Hospital gothenburg sends a CT study of 10 instances
    Worker gpu-a comes back
    Worker gpu-b comes back
    The study ${study} arrives whole at exactly one worker of pool stroke

Acknowledged instances survive kill -9 of the node
    [Tags]    UR-016    UR-017
    Worker gpu-a goes down
    Worker gpu-b goes down
    ${study}=    Hospital stockholm sends a CT study of 20 instances
    Kill WolfPACS with signal 9
    The spool holds every acknowledged instance of study ${study}
    Start WolfPACS
    Worker gpu-a comes back
    Worker gpu-b comes back
    The study ${study} arrives whole at exactly one worker of pool stroke

SIGTERM stops the node with exit code 0 and the queue is delivered after the next start
    [Tags]    UR-035
    Worker gpu-a goes down
    Worker gpu-b goes down
    ${study}=    Hospital gothenburg sends a CT study of 5 instances
    ${code}=    Stop WolfPACS
    Should Be Equal As Integers    ${code}    0
    Worker gpu-a comes back
    Worker gpu-b comes back
    Start WolfPACS
    The study ${study} arrives whole at exactly one worker of pool stroke

A study stays with its worker across a restart
    [Tags]    UR-003
    ${study}=    Hospital stockholm sends a CT study of 3 instances
    ${before}=    The study ${study} arrives whole at exactly one worker of pool stroke
    Restart WolfPACS
    Hospital stockholm sends 3 more instances of study ${study}
    ${after}=    The study ${study} arrives whole at exactly one worker of pool stroke
    Should Be Equal    ${before}    ${after}
    Kill WolfPACS with signal 9
    Start WolfPACS
    Hospital stockholm sends 3 more instances of study ${study}
    ${again}=    The study ${study} arrives whole at exactly one worker of pool stroke
    Should Be Equal    ${before}    ${again}

An instance its worker cannot take is kept in dead with the reason and can be sent again
    [Tags]    UR-018
    ${study}=    Hospital uppsala sends a study of 2 instances in JPEG-LS
    ${dead}=    Wait until ctl    len(r) == 2    dead
    Log    ${dead}
    Should Contain    ${{json.dumps($dead)}}    ${study}
    Should Contain    ${{json.dumps($dead)}}    does not accept
    Worker mammo-a comes back accepting every transfer syntax
    Ctl    retry-dead    --all
    The study ${study} arrives whole at exactly one worker of pool mammo

A crashed part of the node is restarted and routing goes on; fault injection is opt-in
    [Tags]    UR-034
    ${code}    ${out}    ${err}=    Run ctl    kill    router
    Should Be Equal As Integers    ${code}    1
    Should Contain    ${err}    fault injection is disabled
    Restart WolfPACS    WOLFPACS_FAULT_INJECTION=1
    Ctl    kill    router
    Wait until ctl    [c for c in r["children"] if c["id"] == "router"][0]["restarts"] == 1    tree
    ${study}=    Hospital stockholm sends a CT study of 5 instances
    The study ${study} arrives whole at exactly one worker of pool stroke

A state database of a newer version is refused and left as it was
    [Tags]    UR-052
    ${code}=    Stop WolfPACS
    ${before}=    The state database is made to say schema version 999
    ${code}    ${err}=    Run WolfPACS until it exits
    Should Be Equal As Integers    ${code}    2
    Should Contain    ${err}    state.sqlite3
    Should Contain    ${err}    schema version 999
    ${after}=    SHA-256 of the state database
    Should Be Equal    ${before}    ${after}
