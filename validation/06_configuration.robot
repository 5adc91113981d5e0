*** Settings ***
Documentation     An operator learns of a config mistake before anything starts, with the file and
...               the line; a new user sees the whole round trip with one command.
Library           WolfPACS.py
Library           String
Test Teardown     Stop everything

*** Variables ***
${BAD}            [node]\nhttp_port = 0\n\n[[destinations]]\nname = "pacs"\nhost = "127.0.0.1"\nport = 11120\nae_title = "PACS"\n\n[[clients]]\nname = "stockholm"\nae_title = "STHLM_SECRET"\ndestination = "pacs"\npool = "stroke"\n\n[[workers]]\nname = "gpu-a"\nhost = "127.0.0.1"\nport = 11130\npool = "stroke"\n
${GOOD}           [node]\nhttp_port = 0\n\n[[destinations]]\nname = "pacs"\nhost = "127.0.0.1"\nport = 11120\nae_title = "PACS"\n\n[[clients]]\nname = "stockholm"\nae_title = "STHLM_SECRET"\ndestination = "pacs"\npool = "stroke"\n\n[[workers]]\nname = "gpu-a"\nhost = "127.0.0.1"\nport = 11130\nae_title = "GPU_A"\npool = "stroke"\n

*** Test Cases ***
A config mistake stops the start with exit code 2, naming the file, the line and the key
    [Tags]    UR-044
    ${path}=    Write file    bad.toml    ${BAD}
    ${code}    ${out}    ${err}=    Run wolfpacs    run    --config    ${path}
    Should Be Equal As Integers    ${code}    2
    Should Contain    ${err}    config error: ${path}:16: workers[0]: missing required key 'ae_title'

Config check says whether a file is good, and names the key a typo meant
    [Tags]    UR-045
    ${path}=    Write file    good.toml    ${GOOD}
    ${code}    ${out}    ${err}=    Run wolfpacs    config    check    ${path}
    Should Be Equal As Integers    ${code}    0    ${err}
    Should Contain    ${out}    ok (1 client, 1 worker, 1 destination)
    ${typo}=    Replace String    ${GOOD}    http_port    http_prot
    ${path}=    Write file    typo.toml    ${typo}
    ${code}    ${out}    ${err}=    Run wolfpacs    config    check    ${path}
    Should Be Equal As Integers    ${code}    2
    Should Contain    ${out}${err}    node.http_prot: unknown key (did you mean 'http_port'?)
    ${code}    ${example}    ${err}=    Run wolfpacs    config    example
    ${path}=    Write file    example.toml    ${example}
    ${code}    ${out}    ${err}=    Run wolfpacs    config    check    ${path}
    Should Be Equal As Integers    ${code}    0    ${err}

The demo shows the whole round trip with nothing to configure
    [Tags]    UR-047
    ${code}    ${out}    ${err}=    Run wolfpacs    demo
    Should Be Equal As Integers    ${code}    0    ${err}
    Should Contain    ${out}    every derived instance reached the PACS
