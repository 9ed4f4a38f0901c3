"""The custom topic our own events go to: CloudEvents 1.0 input, no local auth, the app's identity
the only sender (EventGrid Data Sender on the topic), and the app told the topic's endpoint."""

from __future__ import annotations

from tests.infra import bicep

MODULE = bicep.INFRA / "modules" / "events-topic.bicep"
SENDER = "d5a91429-5739-47e2-a06b-3470a27159e7"  # EventGrid Data Sender


def test_the_topic_takes_cloudevents_and_no_keys():
    doc = bicep.parse(MODULE)
    [topic] = bicep.resources(doc, "Microsoft.EventGrid/topics").values()
    props = bicep.config(topic)["properties"]
    assert props["inputSchema"] == "CloudEventSchemaV1_0"
    assert props["disableLocalAuth"] is True, "only Entra identities publish"
    assert "inputSchemaMapping" not in props


def test_the_app_identity_is_the_sender_on_the_topic_alone():
    doc = bicep.parse(MODULE)
    [assignment] = bicep.resources(doc, "Microsoft.Authorization/roleAssignments").values()
    body = bicep.config(assignment)
    assert body["scope"] == "topic"
    role_var = body["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
    assert doc["variables"][role_var]["value"] == SENDER
    assert body["properties"]["principalId"] == "functionPrincipalId"
    main = bicep.parse(bicep.MAIN)
    [module] = bicep.modules_using(main, bicep.MAIN, MODULE).values()
    assert bicep.dotted(bicep.config(module)["params"]["functionPrincipalId"]) == "functionApp.outputs.principalId"


def test_the_app_publishes_to_that_topic_as_itself():
    main = bicep.parse(bicep.MAIN)
    [name] = bicep.modules_using(main, bicep.MAIN, MODULE)
    settings = main["variables"]["reactorSettings"]["value"]
    assert bicep.dotted(settings["REACTOR_EVENTS_TOPIC_ENDPOINT"]) == f"{name}.outputs.endpoint"
    assert bicep.dotted(settings["REACTOR_EVENTS_SOURCE"]) == "functionApp.outputs.id"
    assert "REACTOR_LOCAL_EVENTS_TOPIC_KEY" not in settings, "no key in Azure: local auth is disabled"
    assert "REACTOR_LOCAL_EVENTS_TOPIC_KEY" not in main["variables"]["reactorSecretSettings"]["value"]
    doc = bicep.parse(MODULE)
    assert bicep.dotted(doc["outputs"]["endpoint"]["value"]) == "topic.properties.endpoint"
