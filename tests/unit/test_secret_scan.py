"""The check every test host runs when it stops: no secret setting's value in its log."""

from tests.conftest import leaked_secrets

ENV = {
    "REACTOR_STORAGE_CONNECTION": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                                  "AccountKey=c2VjcmV0LWtleS1mb3ItdGVzdHM=;BlobEndpoint=http://127.0.0.1:1/x",
    "LOCAL_FUNCTION_KEYS": "default:viewer-key-123,ops:ops-key-456",
    "REACTOR_NOTIFY_SECRET_ML_TEAMS": "http://127.0.0.1:8099/teams/fake-webhook-8Rw3",
    "REACTOR_TABLE_PREFIX": "reactorprefix",  # not a secret by name: may appear anywhere
    "LOCAL_TOPIC_KEY": "",
}


def test_a_connection_strings_account_key_is_found_but_not_its_public_parts() -> None:
    assert leaked_secrets("signed with c2VjcmV0LWtleS1mb3ItdGVzdHM=", ENV) == ["REACTOR_STORAGE_CONNECTION"]
    assert leaked_secrets("account devstoreaccount1 at http://127.0.0.1:1/x", ENV) == []


def test_each_key_of_a_key_list_and_a_whole_webhook_url_are_secrets() -> None:
    assert leaked_secrets("x-functions-key: ops-key-456", ENV) == ["LOCAL_FUNCTION_KEYS"]
    assert leaked_secrets("POST http://127.0.0.1:8099/teams/fake-webhook-8Rw3", ENV) == [
        "REACTOR_NOTIFY_SECRET_ML_TEAMS"]
    assert leaked_secrets("key name default, receiver ml-teams, table reactorprefixevents", ENV) == []
