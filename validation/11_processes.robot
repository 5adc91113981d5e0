*** Settings ***
Documentation     A node of several processes (README, "Processes and nodes"): hospitals, workers
...               and the operator still see one node, on the same ports, with one control socket
...               and one HTTP port; the kernel spreads the associations over the processes, every
...               study lands whole on one worker and its results go home whichever process takes
...               them; a process killed with kill -9 is started again as itself and loses nothing
...               acknowledged; SIGTERM stops them all with exit code 0. (With DCMTK and a child's
...               own counters: integration/test_processes.py; the supervisor: tests/test_processes.py.)
Library           WolfPACS.py
Suite Setup       Start the hospital network    processes=2    node_id=node-a    lease_seconds=2    fault_injection=true
Suite Teardown    Stop everything

*** Test Cases ***
The node of two processes is one node to monitoring and to the operator
    [Tags]    UR-058
    ${processes}=    The node runs 2 processes
    Should Be Equal    ${processes}[1][node_id]    node-a.1
    Should Be Equal    ${processes}[2][node_id]    node-a.2
    ${status}    ${body}=    HTTP GET    /readyz
    Should Be Equal As Integers    ${status}    200
    Wait until metric    wolfpacs_processes    2    state=running
    # a gauge of the whole node counts once, however many processes report it
    Wait until metric    wolfpacs_worker_state    1    worker=gpu-a    state=active
    Wait until metric    wolfpacs_pool_workers    2    pool=stroke
    Hospital gothenburg can echo

Associations spread over both processes, each study lands whole on one worker and its result goes home
    [Documentation]    Each study is two series on two associations, and the studies go on until
    ...    one study's two associations were taken by the two processes: its second series
    ...    must follow the first to its worker though another process routed the first.
    [Tags]    UR-058    UR-053
    Worker gpu-a goes down
    Worker gpu-b goes down
    @{studies}=    Hospital stockholm sends studies until every process of the node holds some
    Worker gpu-a comes back
    Worker gpu-b comes back
    FOR    ${study}    IN    @{studies}
        ${worker}=    The study ${study} arrives whole at exactly one worker of pool stroke
        ${status}=    Worker ${worker} sends a result for study ${study}
        Should Be Equal    ${status}    0x0000
        The result arrives at the PACS of stockholm and at no other
    END
    Wait until ctl    not [q for q in r if q["instances"]]    queues

A process killed with instances queued is started again as itself, and nothing acknowledged is lost
    [Tags]    UR-059
    Worker gpu-a goes down
    Worker gpu-b goes down
    @{studies}=    Hospital gothenburg sends studies until every process of the node holds some
    Kill process 1 of the node
    The killed process runs again as the same node, restarted 1 time
    Worker gpu-a comes back
    Worker gpu-b comes back
    FOR    ${study}    IN    @{studies}
        The study ${study} arrives whole at exactly one worker of pool stroke
    END
    Wait until metric    wolfpacs_process_restarts_total    1

SIGTERM stops every process of the node and the node exits with code 0
    [Tags]    UR-059    UR-035
    ${pids}=    The pids of the node's processes
    Length Should Be    ${pids}    2
    ${code}=    Stop WolfPACS
    Should Be Equal As Integers    ${code}    0
    No process of ${pids} is left
