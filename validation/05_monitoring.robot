*** Settings ***
Documentation     The hospital's IT and the AI vendor see what the node does: metrics, health and
...               readiness, the status page and JSON views, overdue results, alert rules, the
...               audit log. The lung pool tracks results here (result_timeout = 1 s).
Library           WolfPACS.py
Library           OperatingSystem
Library           String
Suite Setup       Start the hospital network    lung_result_timeout=1
Suite Teardown    Stop everything

*** Variables ***
${PAGE_TOKEN}       page-token-of-32-characters-0001
${METRICS_TOKEN}    metrics-token-of-32-characters-2

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

The image runs the node as the unprivileged user wolfpacs and its health check asks /healthz
    [Tags]    UR-046
    ${docker}=    Get File    ${CURDIR}/../Dockerfile
    ${users}=    Get Regexp Matches    ${docker}    (?m)^USER\\s+(\\S+)\\s*$    1
    Should Be Equal    ${users}[-1]    wolfpacs    the image runs as the last USER of the Dockerfile
    Should Match Regexp    ${docker}    useradd [^\\n]*--uid 10001 [^\\n]* wolfpacs\\b
    Should Contain    ${docker}    VOLUME /data
    Should Contain    ${docker}    EXPOSE 11112 11113 9111
    Should Contain    ${docker}    wolfpacs.healthcheck
    ${config}=    Config file
    ${code}    ${out}    ${err}=    Run healthcheck    ${config}
    Should Be Equal As Integers    ${code}    0    ${err}

With tokens set, the page, the JSON views and the metrics need them; health stays open
    [Documentation]    All on loopback (where, without a token, the page is open to all): the
    ...    403 away from loopback is not tried here (integration/test_status_page.py).
    [Tags]    UR-039
    Restart WolfPACS with    http_token=${PAGE_TOKEN}    metrics_token=${METRICS_TOKEN}
    FOR    ${path}    IN    /    /api/workers
        ${status}    ${body}=    HTTP GET    ${path}
        Should Be Equal As Integers    ${status}    401    ${path} without the token
        ${status}    ${body}=    HTTP GET    ${path}    token=${METRICS_TOKEN}
        Should Be Equal As Integers    ${status}    401    ${path} with the metrics token
        ${status}    ${body}=    HTTP GET    ${path}    token=${PAGE_TOKEN}
        Should Be Equal As Integers    ${status}    200    ${path} with the token
        Should Contain    ${body}    gpu-a
    END
    ${status}    ${body}=    HTTP GET    /metrics
    Should Be Equal As Integers    ${status}    401
    ${status}    ${body}=    HTTP GET    /metrics    token=${PAGE_TOKEN}
    Should Be Equal As Integers    ${status}    401    /metrics with the page's token
    ${status}    ${body}=    HTTP GET    /metrics    token=${METRICS_TOKEN}
    Should Be Equal As Integers    ${status}    200
    Should Contain    ${body}    wolfpacs_instances_total
    FOR    ${path}    IN    /healthz    /readyz
        ${status}    ${body}=    HTTP GET    ${path}
        Should Be Equal As Integers    ${status}    200    ${path} is open
    END
    ${log}=    Node log
    Should Not Contain    ${log}    ${PAGE_TOKEN}
    [Teardown]    Restart WolfPACS with    http_token=    metrics_token=
