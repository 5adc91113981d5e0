*** Settings ***
Documentation     The status codes of the DICOM Conformance Statement (section 3.4) that no ordinary
...               hospital or worker meets, each provoked against the running node: a worker
...               holding one StudyInstanceUID for two hospitals, hand-made DIMSE messages that
...               DCMTK would never send, and a state database held by another program. Each test
...               carries the status it validates as a tag (validation/trace.py checks that every
...               status of the statement has one, or names the pytest test that proves it).
Library           WolfPACS.py
Suite Setup       Start the hospital network
Suite Teardown    Stop everything

*** Test Cases ***
A result for a StudyInstanceUID its worker holds for two hospitals is refused 0xC004, never guessed
    [Tags]    UR-012    0xC004
    [Teardown]    Ctl    resume    gpu-b
    Ctl    drain    gpu-b
    ${study}=    A new study UID
    ${statuses}=    Hospital stockholm sends a CT series "HEAD" of 1 instances in study ${study}
    Should Be Equal    ${statuses}    ${{["0x0000"]}}
    ${statuses}=    Hospital gothenburg sends a CT series "HEAD" of 1 instances in study ${study}
    Should Be Equal    ${statuses}    ${{["0x0000"]}}
    Worker gpu-a holds 2 instances of study ${study}
    ${status}=    Worker gpu-a sends a result for study ${study}
    Should Be Equal    ${status}    0xC004
    A dead letter for study ${study} says ambiguous study
    The last result is at no hospital's PACS

A C-STORE of another SOP class than its presentation context's is refused 0x0122, and the association goes on
    [Tags]    UR-049    0x0122
    ${statuses}=    Hospital stockholm sends an MR image on the context it agreed for CT, a CT image on the Verification context, then a CT image on its own
    Should Be Equal    ${statuses}    ${{["0x0122", "0x0122", "0x0000"]}}
    Nothing refused is kept: not in the spool, not in dead/, not at a worker

A request the node does not serve is answered 0x0211, and the association goes on
    [Tags]    UR-049    0x0211
    ${statuses}=    Hospital stockholm asks for an N-GET and a C-FIND, then echoes
    Should Be Equal    ${statuses}    ${{["0x0211", "0x0211", "0x0000"]}}

A dataset that cannot be parsed is refused 0xC001, nothing of it kept, and the association goes on
    [Tags]    UR-026    0xC001
    ${statuses}=    Hospital stockholm sends an instance whose dataset is no DICOM, then a good one
    Should Be Equal    ${statuses}    ${{["0xC001", "0x0000"]}}
    ${log}=    Node log
    Should Contain    ${log}    refused (0xC001): unreadable dataset
    Nothing refused is kept: not in the spool, not in dead/, not at a worker

While the state database does not answer, a hospital is told 0xA702 to send again, and nothing is half kept
    [Tags]    UR-049    UR-056    UR-038    0xA702
    [Teardown]    The other program lets go of the state database
    ${study}=    A new study UID
    Another program holds the write lock of the state database
    ${statuses}=    Hospital stockholm sends a CT series "HEAD" of 1 instances in study ${study}
    Should Be Equal    ${statuses}    ${{["0xA702"]}}
    ${status}    ${body}=    HTTP GET    /readyz
    Should Be Equal As Integers    ${status}    503    not ready: a load balancer sends elsewhere
    Should Contain    ${body}    the store takes no write
    The other program lets go of the state database
    ${status}    ${body}=    HTTP GET    /readyz
    Should Be Equal As Integers    ${status}    200
    Nothing refused is kept: not in the spool, not in dead/, not at a worker
    ${statuses}=    Hospital stockholm sends a CT series "HEAD" of 1 instances in study ${study}
    Should Be Equal    ${statuses}    ${{["0x0000"]}}
    ${worker}=    The study ${study} arrives whole at exactly one worker of pool stroke
    Worker ${worker} holds 1 instances of study ${study}
