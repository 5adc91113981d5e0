*** Settings ***
Documentation     What the node does with a worker's answers (Conformance Statement, section 3.5;
...               README, "What senders do with a peer's answers"). Worker lung-a (pool lung, where
...               Hospital stockholm's chest series go) is replaced by a pynetdicom worker in the
...               suite's own process, on its port and AE title, that answers each C-STORE with the
...               status a test chooses, or rejects associations; it records what it is sent, when.
Library           WolfPACS.py
Suite Setup       Start the hospital network    max_attempts=4
Suite Teardown    Stop everything
Test Teardown     Worker lung-a is itself again

*** Test Cases ***
A worker out of resources gets the instance again after a doubling backoff, is not probed meanwhile, and has it
    [Tags]    UR-064
    Worker lung-a is replaced by one that answers 0xA700 0xA700 0xA700 then 0x0000
    ${sop}=    Hospital stockholm sends one instance to pool lung
    Worker lung-a holds ${sop}
    ${times}=    Worker lung-a is sent ${sop} 4 times
    The attempts are spaced by a doubling backoff    ${times}
    Worker lung-a got no C-ECHO between ${times}[0] and ${times}[-1]
    No dead letter for ${sop}
    The queues are empty

A worker that took an instance but could not answer gets it again: at least once, never zero
    [Tags]    UR-065
    Worker lung-a is replaced by one that answers abort-after-taking then 0x0000
    ${sop}=    Hospital stockholm sends one instance to pool lung
    ${times}=    Worker lung-a is sent ${sop} 2 times
    Worker lung-a took 2 identical copies of the dataset sent
    No dead letter for ${sop}
    The queues are empty

Each status to send again, answered max_attempts times, puts the instance in dead/ with that status
    [Tags]    UR-064
    FOR    ${status}    IN    0xA700    0xA7FF    0x0110    0x0213
        Worker lung-a is replaced by one that answers ${status}
        ${sop}=    Hospital stockholm sends one instance to pool lung
        ${times}=    Worker lung-a is sent ${sop} 4 times
        The attempts are spaced by a doubling backoff    ${times}
        The dead letter of ${sop} says status ${status} and gave_up
        Worker lung-a is itself again
    END

Any other failure puts the instance in dead/ at once, with its status
    [Tags]    UR-064    UR-018
    FOR    ${status}    IN    0xC000    0xA900    0x0122    0xC123
        Worker lung-a is replaced by one that answers ${status}
        ${sop}=    Hospital stockholm sends one instance to pool lung
        The dead letter of ${sop} says status ${status} and refused
        Worker lung-a is sent ${sop} 1 times
        Worker lung-a is itself again
    END

Success and warnings are delivered, once
    [Tags]    UR-064
    FOR    ${status}    IN    0x0000    0xB000    0xB007    0xB006    0x0107
        Worker lung-a is replaced by one that answers ${status}
        ${sop}=    Hospital stockholm sends one instance to pool lung
        Worker lung-a holds ${sop}
        Worker lung-a is sent ${sop} 1 times
        No dead letter for ${sop}
        Worker lung-a is itself again
    END

A worker that rejects the node's associations is tried for as long as it takes, and nothing goes to dead/
    [Tags]    UR-064    UR-015
    Worker lung-a is replaced by one that answers 0x0000
    Worker lung-a rejects every association
    ${sop}=    Hospital stockholm sends one instance to pool lung
    Wait until worker lung-a has refused 10 associations
    No dead letter for ${sop}
    Worker lung-a accepts associations again
    Worker lung-a holds ${sop}
    No dead letter for ${sop}
    The queues are empty

The node calls a worker by its AE title with the maximum length of the statement, and sends no PDU longer than the worker's, nor than 1 MiB to one that announces none
    [Tags]    UR-049
    ${rows}=    Statement table    3.3 Limits and timeouts
    ${limits}=    Evaluate    {r["key"]: r["default"] for r in $rows}
    FOR    ${announced}    ${longest}    ${rows}    IN    16384    16384    256    0    1048576    1024
        Worker lung-a is replaced by one that answers 0x0000    max_pdu=${announced}
        ${sop}=    Hospital stockholm sends one instance to pool lung    rows=${rows}
        Worker lung-a holds ${sop}
        Worker lung-a was called by ${limits}[ae_title] announcing ${limits}[max_pdu]
        No PDU sent to worker lung-a was longer than ${longest}
        Worker lung-a is itself again
    END

Private attributes and a Specific Character Set pass through unchanged
    [Tags]    UR-019
    Worker lung-a is replaced by one that answers 0x0000
    Hospital stockholm sends an instance in ISO_IR 100 with private attributes to pool lung
    Worker lung-a holds the dataset sent, byte for byte

A private SOP class is forwarded as it came, and the node proposes a worker only that and Verification
    [Tags]    UR-048
    ${rows}=    Statement table    3.1 SOP classes
    ${private}=    Evaluate    next(r["uid"] for r in $rows if r["sop class"].startswith("private"))
    ${allowed}=    Create List    ${private}    1.2.840.10008.1.1
    Worker lung-a is replaced by one that answers 0x0000
    ${sop}=    Hospital stockholm sends one instance to pool lung    sop_class=${private}
    Worker lung-a holds ${sop}
    The node proposed to worker lung-a only ${allowed}
