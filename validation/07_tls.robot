*** Settings ***
Documentation     Hospitals send over DICOM TLS; a hospital pinned to its certificate gets in with
...               it and with nothing else, not even another hospital's certificate from the same
...               CA. The node reaches worker lung-a over TLS and checks that its certificate
...               names its host. The outside port speaks TLS 1.2 and 1.3 and no older version,
...               and wants a certificate of every hospital unless told not to (a pinned hospital
...               needs one all the same); going out to a worker the node, too, speaks TLS 1.2 and
...               1.3 and no older version. With TLS on the inside port a worker sends its results
...               over TLS with its own certificate, and nothing else gets in there.
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

The node sends to a worker over TLS, and only to a worker whose certificate names its host
    [Tags]    UR-051
    ${study}=    Hospital stockholm sends a CT series "CT Chest 1mm" over TLS
    The series "CT Chest 1mm" of study ${study} arrives whole at one worker of pool lung
    Worker lung-a presents a certificate that names no host
    ${study}=    Hospital stockholm sends a CT series "Lung 5mm" over TLS
    Wait until ctl    [w for w in r if w["name"] == "lung-a" and w["last_error"] and w["queued"]]    workers
    No worker holds the series "Lung 5mm" of study ${study}
    Restart WolfPACS with lung-a's host name not checked
    The series "Lung 5mm" of study ${study} arrives whole at one worker of pool lung

The outside port speaks TLS 1.2 and 1.3, and refuses TLS 1.1 and 1.0 and weak cipher suites
    [Tags]    UR-043
    FOR    ${version}    IN    1.2    1.3
        ${answer}=    The outside port's TLS handshake with a hospital that speaks only TLS ${version}
        Should Be Equal    ${answer}    accepted TLSv${version}
    END
    FOR    ${version}    IN    1.1    1.0
        ${answer}=    The outside port's TLS handshake with a hospital that speaks only TLS ${version}
        Should Contain    ${answer}    alert protocol version
    END
    # OpenSSL 3 has no RC4, DES or export suites to offer; the suites without encryption it has
    ${answer}=    The outside port's TLS 1.2 handshake with a hospital that offers only eNULL:!aNULL
    Should Be Equal    ${answer}    no session

A hospital without a certificate is refused, unless client certificates are not required
    [Tags]    UR-043
    [Documentation]    A pinned hospital needs its certificate all the same, and gets in with it.
    ${statuses}=    Hospital gothenburg sends a CT study over TLS without a certificate
    Should Be Empty    ${statuses}
    Restart WolfPACS with client certificates not required
    ${statuses}=    Hospital gothenburg sends a CT study over TLS without a certificate
    Should Be Equal    ${statuses}    ${{["0x0000", "0x0000"]}}
    ${study}=    The last study sent
    The study ${study} arrives whole at exactly one worker of pool stroke
    ${statuses}=    Hospital stockholm sends a CT study over TLS without a certificate
    Should Be Empty    ${statuses}
    ${log}=    Node log
    Should Contain    ${log}    its TLS certificate is not client stockholm's
    ${statuses}=    Hospital stockholm sends a CT study over TLS with the certificate of stockholm
    Should Be Equal    ${statuses}    ${{["0x0000", "0x0000"]}}

The node speaks TLS 1.2 and 1.3 to a worker, and no older version
    [Tags]    UR-051
    Worker lung-a goes down
    ${study}=    Hospital stockholm sends a CT series "Chest 2mm" over TLS
    FOR    ${version}    IN    1.2    1.3
        ${answer}=    The node's TLS handshake with worker lung-a when it speaks only TLS ${version}
        Should Be Equal    ${answer}    accepted TLSv${version}
        The node offered no weak cipher suite
    END
    FOR    ${version}    IN    1.1    1.0
        ${answer}=    The node's TLS handshake with worker lung-a when it speaks only TLS ${version}
        Should Be Equal    ${answer}    refused
    END
    Worker lung-a comes back
    The series "Chest 2mm" of study ${study} arrives whole at one worker of pool lung

A worker sends its results over TLS on the inside port, with its own certificate and nothing else
    [Tags]    UR-060
    Restart WolfPACS with TLS on the inside port and worker lung-a pinned
    ${study}=    Hospital stockholm sends a CT series "Lung 1mm" over TLS
    The series "Lung 1mm" of study ${study} arrives whole at one worker of pool lung
    ${status}=    Worker lung-a sends a result for study ${study} over TLS with the certificate of lung-a
    Should Be Equal    ${status}    0x0000
    The result arrives at the PACS of stockholm and at no other
    ${status}=    Worker lung-a sends a result for study ${study} over TLS with the certificate of gothenburg
    Should Start With    ${status}    no answer
    ${log}=    Node log
    Should Contain    ${log}    its TLS certificate is not worker lung-a's
    ${status}=    Worker lung-a sends a result for study ${study} over TLS with the certificate of stranger
    Should Start With    ${status}    no answer
    ${status}=    Worker lung-a sends a result for study ${study}
    Should Start With    ${status}    no answer

A result goes home to the hospital's PACS over TLS
    [Tags]    UR-051
    The PACS of stockholm speaks only TLS
    ${study}=    Hospital stockholm sends a CT series "Lung 3mm" over TLS
    The series "Lung 3mm" of study ${study} arrives whole at one worker of pool lung
    ${status}=    Worker lung-a sends a result for study ${study} over TLS with the certificate of lung-a
    Should Be Equal    ${status}    0x0000
    The result arrives at the PACS of stockholm and at no other
