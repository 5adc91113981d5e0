*** Settings ***
Documentation     Bad input and limits cost their sender, never the node: each gets the DICOM
...               answer the README promises, and everyone else goes on being served.
Library           WolfPACS.py
Suite Setup       Start the hospital network    max_instance_bytes=200000    max_associations_per_client=2    spool_max_bytes=120000
Suite Teardown    Stop everything

*** Test Cases ***
An instance without a StudyInstanceUID is answered 0xC002 and the association goes on
    [Tags]    UR-021    0xC002    0x0000
    ${statuses}=    Hospital stockholm sends an instance without a StudyInstanceUID and then a good one
    Should Be Equal    ${statuses}    ${{["0xC002", "0x0000"]}}

A pool without an active worker is answered 0xA701
    [Tags]    UR-022    0xA701
    Ctl    drain    mammo-a
    ${study}=    A new study UID
    ${statuses}=    Hospital uppsala sends a CT series "MAMMO" of 1 instances in study ${study}
    Should Be Equal    ${statuses}    ${{["0xA701"]}}
    [Teardown]    Ctl    resume    mammo-a

A full spool is answered 0xA700 until the queues drain
    [Tags]    UR-023    0xA700
    Worker gpu-a goes down
    Worker gpu-b goes down
    ${study}=    A new study UID
    ${statuses}=    Hospital gothenburg sends a CT series "HEAD" of 20 instances in study ${study}
    Should Contain    ${statuses}    0x0000
    Should Contain    ${statuses}    0xA700
    Nothing refused is kept: not in the spool, not in dead/, not at a worker
    Worker gpu-a comes back
    Worker gpu-b comes back
    Wait until ctl    not r    queues
    The series "HEAD" of study ${study} arrives whole at one worker of pool stroke
    Nothing refused is kept: not in the spool, not in dead/, not at a worker
    ${statuses}=    Hospital gothenburg sends a CT series "AGAIN" of 2 instances in study ${study}
    Should Be Equal    ${statuses}    ${{["0x0000", "0x0000"]}}
    [Teardown]    Run Keywords    Worker gpu-a comes back    AND    Worker gpu-b comes back

A dataset over max_instance_bytes aborts its association and the node goes on
    [Tags]    UR-024
    ${output}=    Hospital stockholm sends one instance of 300000 bytes of pixel data
    Should Contain    ${output}    Peer aborted Association
    Should Not Contain    ${output}    Received Store Response (Success)
    Hospital stockholm can echo
    ${study}=    Hospital stockholm sends a CT study of 2 instances
    The study ${study} arrives whole at exactly one worker of pool stroke

A hospital over its number of associations is rejected while others are served
    [Tags]    UR-025
    Hospital stockholm holds 2 associations open
    ${answer}=    Echo from stockholm to the outside port with called STHLM_SECRET and calling STHLM_CT
    Should Contain    ${answer}    Local Limit Exceeded
    Should Contain    ${answer}    Transient
    Hospital gothenburg can echo
    Release the held associations
    Hospital stockholm can echo

Garbage on either port costs only its sender
    [Tags]    UR-026
    A stranger sends 5000 bytes of garbage to the outside port
    A stranger sends 5000 bytes of garbage to the inside port
    Hospital stockholm can echo
    ${answer}=    Echo from gpu-a to the inside port with called WOLFPACS and calling GPU_A
    Should Be Equal    ${answer}    ok
    ${study}=    Hospital stockholm sends a CT study of 3 instances
    The study ${study} arrives whole at exactly one worker of pool stroke
