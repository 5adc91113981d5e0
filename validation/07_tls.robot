*** Settings ***
Documentation     Hospitals send over DICOM TLS; a hospital pinned to its certificate gets in with
...               it and with nothing else, not even another hospital's certificate from the same
...               CA. (Outgoing TLS to workers and host names: integration/test_tls.py.)
Library           WolfPACS.py
Suite Setup       Start the hospital network    tls_outside=true
Suite Teardown    Stop everything

*** Test Cases ***
A hospital pinned to its certificate sends over TLS
    [Tags]    UR-043
    ${statuses}=    Hospital stockholm sends a CT study over TLS with the certificate of stockholm
    Should Be Equal    ${statuses}    ${{["0x0000", "0x0000"]}}
    ${study}=    The last study sent
    The study ${study} arrives whole at exactly one worker of pool stroke

Another hospital's certificate, a stranger's and plain TCP are refused
    [Tags]    UR-043
    ${statuses}=    Hospital stockholm sends a CT study over TLS with the certificate of gothenburg
    Should Be Empty    ${statuses}
    ${log}=    Node log
    Should Contain    ${log}    certificate
    ${statuses}=    Hospital stockholm sends a CT study over TLS with the certificate of stranger
    Should Be Empty    ${statuses}
    ${answer}=    Echo from stockholm to the outside port with called STHLM_SECRET and calling STHLM_CT
    Should Not Be Equal    ${answer}    ok
    ${statuses}=    Hospital gothenburg sends a CT study over TLS with the certificate of gothenburg
    Should Be Equal    ${statuses}    ${{["0x0000", "0x0000"]}}
