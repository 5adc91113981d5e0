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

Verification is accepted in exactly the transfer syntaxes the statement lists for it, on both ports
    [Tags]    UR-048
    ${rows}=    Statement table    4. Transfer syntaxes
    FOR    ${row}    IN    @{rows}
        ${uid}=    Set Variable    ${row}[uid]
        FOR    ${side}    IN    outside    inside
            IF    "${row}[verification]" == "yes"
                The ${side} port accepts ${VERIFICATION} in ${uid} when proposed
            ELSE
                The ${side} port refuses ${VERIFICATION} in ${uid}
            END
        END
    END

Storage is accepted in the first of several transfer syntaxes proposed in one context, on both ports
    [Tags]    UR-048
    ${rows}=    Statement table    4. Transfer syntaxes
    ${syntaxes}=    Evaluate    [r["uid"] for r in $rows if r["storage"] == "yes"]
    FOR    ${i}    IN RANGE    ${{len($syntaxes)}}
        ${proposed}=    Evaluate    $syntaxes[$i:] + $syntaxes[:$i]
        The outside port accepts ${CT} in the first of ${proposed} proposed together
        The inside port accepts ${CT} in the first of ${proposed} proposed together
    END

The SOP classes of the statement are served as it says on both ports, private ones included
    [Tags]    UR-048
    ${rows}=    Statement table    3.1 SOP classes
    FOR    ${row}    IN    @{rows}
        ${uid}=    Set Variable    ${row}[uid]
        FOR    ${side}    IN    outside    inside
            IF    "${row}[scp]" == "yes"
                The ${side} port accepts ${uid} in ${EXPLICIT} when proposed
            ELSE
                The ${side} port refuses ${uid} in ${EXPLICIT}
            END
        END
    END

Every association policy of the statement is what the node does, on both ports
    [Tags]    UR-049
    ${rows}=    Statement table    3.2 Association policies
    FOR    ${row}    IN    @{rows}
        FOR    ${side}    IN    outside    inside
            The ${side} port does as the statement says of ${row}[item]: ${row}[value]
        END
    END

The limits and timeouts of the statement are the running node's defaults
    [Tags]    UR-049
    ${rows}=    Statement table    3.3 Limits and timeouts
    ${keys}=    Evaluate    [r["key"] for r in $rows]
    The suites set no other key of the statement's limits    ${keys}
    ${live}=    The node's effective config
    ${example}=    The defaults of wolfpacs config example for the keys the suites set
    ${defaults}=    Evaluate    {**$live, **$example}
    FOR    ${row}    IN    @{rows}
        Dictionary Should Contain Key    ${defaults}    ${row}[key]
        Should Be Equal    ${defaults}[${row}[key]]    ${row}[default]    ${row}[key]    values=True
    END

The status codes of the statement are those the README promises and the suites validate
    [Tags]    UR-049
    ${statement}=    Statement table    3.4 Status codes sent (C-STORE SCP)
    ${readme}=    README table    Answers WolfPACS gives
    ${codes}=    Evaluate    sorted(r["status"].lower() for r in $statement)
    ${promised}=    Evaluate    sorted(r["status"].lower() for r in $readme)
    Lists Should Be Equal    ${codes}    ${promised}
