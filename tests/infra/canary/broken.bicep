// Canary for tests/infra/test_checkov.py: not valid Bicep, so checkov must report a parsing error
// for it (a template checkov cannot parse is a template it did not scan). Never deployed.

resource broken 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'canarybroken'
  properties: {
    minimumTlsVersion: 'TLS1_2'
