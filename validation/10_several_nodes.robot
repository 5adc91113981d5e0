*** Settings ***
Documentation     Several nodes share one PostgreSQL and, for takeover, one spool (README, "Several
...               nodes"). These suites run without PostgreSQL, so each test checks on one node what
...               a node promises of itself: its identity and lease, its own folder of a shared spool,
...               its queue after kill -9, the watcher of other nodes' changes. The pytest tests that
...               docs/requirements.md names run two nodes on a real PostgreSQL, with haproxy and DCMTK.
Library           WolfPACS.py
Library           Collections
Test Teardown     Stop everything

*** Test Cases ***
The node knows its name and its lease among the nodes, and keeps its name across restarts
    [Tags]    UR-057
    Start the hospital network
    ${nodes}=    Ctl    nodes
    Length Should Be    ${nodes}    1
    Should Be Equal    ${nodes}[0][state]    alive
    Should Be True    ${nodes}[0][this]
    ${name}=    Set Variable    ${nodes}[0][node_id]
    Should Not Be Empty    ${name}
    Restart WolfPACS
    ${again}=    Ctl    nodes
    Should Be Equal    ${again}[0][node_id]    ${name}    a node keeps the name made at its first start
    Should Be True    ${again}[0][epoch] > ${nodes}[0][epoch]    each start is a new epoch

A study sent in two associations lands on one worker, whose route the store keeps for every node
    [Tags]    UR-053
    Start the hospital network    node_id=node-a
    ${study}=    Hospital stockholm sends a CT study of 3 instances
    ${w}=    The study ${study} arrives whole at exactly one worker of pool stroke
    Restart WolfPACS
    Hospital stockholm sends 3 more instances of study ${study}
    Worker ${w} holds 6 instances of study ${study}

With a shared spool, what a node acknowledged waits in its own folder and is delivered after kill -9
    [Tags]    UR-054    UR-057
    Start the hospital network    node_id=node-a    spool_dir=shared-spool    shared_spool=true    lease_seconds=2
    Worker gpu-a goes down
    Worker gpu-b goes down
    ${study}=    Hospital stockholm sends a CT study of 8 instances
    The shared spool shared-spool holds every acknowledged instance of study ${study} under node-a
    ${nodes}=    Ctl    nodes
    Should Be Equal    ${nodes}[0][node_id]    node-a
    Should Be Equal As Integers    ${nodes}[0][queued]    8
    Kill WolfPACS with signal 9
    Start WolfPACS
    Worker gpu-a comes back
    Worker gpu-b comes back
    The study ${study} arrives whole at exactly one worker of pool stroke

The node watches the store for other nodes' changes, and a change made here is not made twice
    [Tags]    UR-055
    Start the hospital network
    Ctl    drain    gpu-b
    ${watcher}=    Wait until ctl    r["state"]["looks"] >= 2    inspect    changes
    Should Be Equal As Integers    ${watcher}[state][applied]    0    its own change, already applied
    ${state}=    Worker state of gpu-b
    Should Be Equal    ${state}    drained

A node taken out of service is forgotten, never one alive or one that still owns a queue
    [Tags]    UR-057
    Start the hospital network    node_id=node-old    lease_seconds=1
    Restart WolfPACS with    node_id=node-new
    Wait until ctl    [n for n in r if n["node_id"] == "node-old" and n["state"] == "dead"]    nodes
    Wait until metric    wolfpacs_nodes    1    state=dead
    ${code}    ${out}    ${err}=    Run ctl    forget-node    node-new
    Should Be Equal As Integers    ${code}    1
    Should Contain    ${err}    alive
    Ctl    forget-node    node-old
    ${nodes}=    Ctl    nodes
    Should Be Equal    ${{[n["node_id"] for n in $nodes]}}    ${{["node-new"]}}
    Wait until metric    wolfpacs_nodes    0    state=dead
