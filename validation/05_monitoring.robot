*** Settings ***
Documentation     The hospital's IT and the AI vendor see what the node does: metrics, health and
...               readiness, the status page and JSON views, overdue results, alert rules, the
...               audit log. The lung pool tracks results here (result_timeout = 1 s).
Library           WolfPACS.py
Library           OperatingSystem
Suite Setup       Start the hospital network    lung_result_timeout=1
Suite Teardown    Stop everything

*** Test Cases ***
Prometheus sees instances in per hospital and out per worker
    [Tags]    UR-037
    ${study}=    Hospital gothenburg sends a CT study of 7 instances
    ${w}=    The study ${study} arrives whole at exactly one worker of pool stroke
    ${in}=    Metric    wolfpacs_instances_total    direction=in    peer=gothenburg    side=outside
    Should Be Equal As Numbers    ${in}    7
    Wait until metric    wolfpacs_instances_total    7    direction=out    peer=${w}    side=worker
    Wait until metric    wolfpacs_worker_state    1    state=active    worker=gpu-a
    ${status}    ${body}=    HTTP GET    /metrics
    Should Contain    ${body}    wolfpacs_queue_
    Should Not Contain    ${body}    GBG_SECRET

Health and readiness answer 200 with a JSON body
    [Tags]    UR-038
    ${status}    ${body}=    HTTP GET    /healthz
    Should Be Equal As Integers    ${status}    200
    Evaluate    json.loads($body)
    ${status}    ${body}=    HTTP GET    /readyz
    Should Be Equal As Integers    ${status}    200
    Evaluate    json.loads($body)

The status page and the JSON views are served on loopback
    [Tags]    UR-039
    ${status}    ${page}=    HTTP GET    /
    Should Be Equal As Integers    ${status}    200
    Should Contain    ${page}    gpu-a
    Should Contain    ${page}    Overdue results
    ${status}    ${body}=    HTTP GET    /api/workers
    Should Be Equal As Integers    ${status}    200
    ${workers}=    Evaluate    json.loads($body)
    Length Should Be    ${workers}    4

A study whose result does not come back is overdue until it does
    [Tags]    UR-036
    ${study}=    A new study UID
    ${s}=    Hospital stockholm sends a CT series "CT Chest 1mm" of 2 instances in study ${study}
    ${w}=    The series "CT Chest 1mm" of study ${study} arrives whole at one worker of pool lung
    ${overdue}=    Wait until ctl    [o for o in r if o["study"] == "${study}"]    overdue
    Should Be Equal    ${overdue}[0][worker]    lung-a
    ${status}    ${body}=    HTTP GET    /api/overdue
    Should Contain    ${body}    ${study}
    Wait until metric    wolfpacs_results_overdue    1    pool=lung    worker=lung-a
    ${status}=    Worker lung-a sends a result for study ${study}
    Should Be Equal    ${status}    0x0000
    Wait until ctl    not [o for o in r if o["study"] == "${study}"]    overdue
    Wait until metric    wolfpacs_results_overdue    0    pool=lung    worker=lung-a

Alert rules for Prometheus come with the product
    [Tags]    UR-040
    ${rules}=    Get File    ${CURDIR}/../docs/monitoring/alerts.yml
    FOR    ${alert}    IN    WolfPACSDown    WolfPACSPoolUnreachable    WolfPACSResultsOverdue
    ...    WolfPACSDeadLetters    WolfPACSRestartLoop    WolfPACSSpoolNearLimit
        Should Contain    ${rules}    alert: ${alert}
    END

The audit log has a JSON line per association and routing decision, without secrets
    [Tags]    UR-041
    ${study}=    Hospital stockholm sends a CT study of 2 instances
    The study ${study} arrives whole at exactly one worker of pool stroke
    ${audit}=    Audit log
    ${events}=    Evaluate    {line["event"] for line in $audit}
    Should Contain    ${events}    association
    Should Contain    ${events}    route
    ${routes}=    Evaluate    [line for line in $audit if line.get("study") == "${study}"]
    Should Not Be Empty    ${routes}
    Should Not Contain    ${{json.dumps($audit)}}    STHLM_SECRET

A pool with no reachable worker still accepts studies and the node stays ready
    [Tags]    UR-042
    Worker lung-a goes down
    ${study}=    A new study UID
    ${statuses}=    Hospital stockholm sends a CT series "Lung 1mm" of 2 instances in study ${study}
    Should Be Equal    ${statuses}    ${{["0x0000", "0x0000"]}}
    Wait until metric    wolfpacs_pool_reachable_workers    0    pool=lung
    ${statuses}=    Hospital stockholm sends a CT series "Lung 5mm" of 2 instances in study ${study}
    Should Be Equal    ${statuses}    ${{["0x0000", "0x0000"]}}
    ${status}    ${body}=    HTTP GET    /readyz
    Should Be Equal As Integers    ${status}    200
    Worker lung-a comes back
    The series "Lung 1mm" of study ${study} arrives whole at one worker of pool lung

The image's health check asks the node's /healthz
    [Tags]    UR-046
    ${docker}=    Get File    ${CURDIR}/../Dockerfile
    Should Contain    ${docker}    --uid 10001
    Should Contain    ${docker}    VOLUME /data
    Should Contain    ${docker}    EXPOSE 11112 11113 9111
    Should Contain    ${docker}    wolfpacs.healthcheck
    ${config}=    Config file
    ${code}    ${out}    ${err}=    Run healthcheck    ${config}
    Should Be Equal As Integers    ${code}    0    ${err}
