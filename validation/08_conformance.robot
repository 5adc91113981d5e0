*** Settings ***
Documentation     The DICOM Conformance Statement (docs/conformance-statement.md) is read as data
...               and each of its facts asked of a running node: what an integration engineer
...               reads there is what the node does.
Library           WolfPACS.py
Library           Collections
Suite Setup       Start the hospital network
Suite Teardown    Stop everything

*** Variables ***
${CT}             1.2.840.10008.5.1.4.1.1.2
${VERIFICATION}    1.2.840.10008.1.1
${EXPLICIT}       1.2.840.10008.1.2.1

*** Test Cases ***
Every transfer syntax of the statement is accepted for storage on both ports
    [Tags]    UR-048
    ${rows}=    Statement table    4. Transfer syntaxes
    FOR    ${row}    IN    @{rows}
        ${uid}=    Set Variable    ${row}[uid]
        Should Be Equal    ${row}[storage]    yes
        The outside port accepts ${CT} in ${uid} when proposed
        The inside port accepts ${CT} in ${uid} when proposed
    END

Verification is accepted in exactly the transfer syntaxes the statement lists for it
    [Tags]    UR-048
    ${rows}=    Statement table    4. Transfer syntaxes
    FOR    ${row}    IN    @{rows}
        ${uid}=    Set Variable    ${row}[uid]
        IF    "${row}[verification]" == "yes"
            The outside port accepts ${VERIFICATION} in ${uid} when proposed
        ELSE
            The outside port refuses ${VERIFICATION} in ${uid}
        END
    END

The SOP classes of the statement are served as it says, private ones included
    [Tags]    UR-048
    ${rows}=    Statement table    3.1 SOP classes
    FOR    ${row}    IN    @{rows}
        ${uid}=    Set Variable    ${row}[uid]
        IF    "${row}[scp]" == "yes"
            The outside port accepts ${uid} in ${EXPLICIT} when proposed
            The inside port accepts ${uid} in ${EXPLICIT} when proposed
        ELSE
            The outside port refuses ${uid} in ${EXPLICIT}
        END
    END

The node's A-ASSOCIATE-AC says what the statement says
    [Tags]    UR-049
    ${rows}=    Statement table    3.2 Association policies
    ${policy}=    Evaluate    {r["item"].lower(): r["value"] for r in $rows}
    FOR    ${side}    IN    outside    inside
        ${said}=    What the ${side} port says of itself in its A-ASSOCIATE-AC
        FOR    ${item}    IN    @{said}
            Should Be Equal    ${said}[${item}]    ${policy}[${item}]
        END
    END

The limits and timeouts of the statement are the node's defaults
    [Tags]    UR-049
    ${rows}=    Statement table    3.3 Limits and timeouts
    ${defaults}=    The defaults of wolfpacs config example
    FOR    ${row}    IN    @{rows}
        Dictionary Should Contain Key    ${defaults}    ${row}[key]
        Should Be Equal    ${defaults}[${row}[key]]    ${row}[default]    ${row}[key]
    END

The status codes of the statement are those the README promises and the suites validate
    [Tags]    UR-049
    ${statement}=    Statement table    3.4 Status codes sent (C-STORE SCP)
    ${readme}=    README table    Answers WolfPACS gives
    ${codes}=    Evaluate    sorted(r["status"].lower() for r in $statement)
    ${promised}=    Evaluate    sorted(r["status"].lower() for r in $readme)
    Lists Should Be Equal    ${codes}    ${promised}
