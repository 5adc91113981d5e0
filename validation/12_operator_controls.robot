*** Settings ***
Documentation     Who may drive the node, removing what still holds work, and the node's last
...               resort (README, "Operating WolfPACS", "Reliability"): the control socket is
...               the node's user's alone and its TCP port needs the token; a worker with queued
...               instances is removed only when forced, and then its queue goes to the rest of its
...               pool; a node whose parts keep crashing gives up with exit code 1 for its service
...               manager to start it again, and what it acknowledged waits for that start.
Library           WolfPACS.py
Test Teardown     Stop everything

*** Test Cases ***
Only the node's user may use the control socket, and its TCP port only with the token
    [Tags]    UR-061
    ${port}=    A free port
    Start the hospital network    control_port=${port}    control_token=sixteen-chars-or-more
    The control socket is open to the node's user only
    ${code}    ${out}    ${err}=    Ctl over TCP with the token sixteen-chars-or-more    workers
    Should Be Equal As Integers    ${code}    0
    Should Contain    ${out}    gpu-a
    ${code}    ${out}    ${err}=    Ctl over TCP with the token not-the-token-at-all    workers
    Should Be Equal As Integers    ${code}    1
    Should Contain    ${err}    unauthenticated
    ${code}    ${out}    ${err}=    Ctl over TCP with the token none    drain    gpu-a
    Should Be Equal As Integers    ${code}    1
    ${state}=    Worker state of gpu-a
    Should Be Equal    ${state}    active    a refused request changed nothing
    ${log}=    Node log
    Should Contain    ${log}    unauthenticated request refused
    Should Not Contain    ${log}    sixteen-chars-or-more

A worker holding queued instances is removed only with --force, and its queue goes to its pool
    [Tags]    UR-062
    Start the hospital network
    Ctl    drain    gpu-b
    Worker gpu-a goes down
    ${study}=    Hospital gothenburg sends a CT study of 6 instances
    Ctl    resume    gpu-b
    ${code}    ${out}    ${err}=    Run ctl    remove-worker    gpu-a
    Should Be Equal As Integers    ${code}    1
    Should Contain    ${err}    --force
    ${workers}=    Ctl    workers
    Should Contain    ${{[w["name"] for w in $workers]}}    gpu-a    refused: still there
    Ctl    remove-worker    gpu-a    --force
    Worker gpu-b holds 6 instances of study ${study}
    The study ${study} arrives whole at exactly one worker of pool stroke
    ${code}    ${out}    ${err}=    Run ctl    remove-destination    gothenburg-pacs    --force
    Should Be Equal As Integers    ${code}    1    a client's destination stays, even forced
    Should Contain    ${err}    gothenburg

A node whose parts keep crashing gives up with exit code 1, and what it acknowledged waits
    [Tags]    UR-063    UR-016
    Start the hospital network    fault_injection=true
    Worker gpu-a goes down
    Worker gpu-b goes down
    ${study}=    Hospital stockholm sends a CT study of 5 instances
    ${code}=    Crash router until the node gives up
    Should Be Equal As Integers    ${code}    1
    ${log}=    Node log
    Should Contain    ${log}    giving up
    Start WolfPACS
    Worker gpu-a comes back
    Worker gpu-b comes back
    The study ${study} arrives whole at exactly one worker of pool stroke
