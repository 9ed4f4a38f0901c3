// Canary for tests/infra/test_checkov.py: checkov scans this file in the same run as infra/, and
// the tests require it to report the findings below. It proves that an insecure resource fails
// the gate and that a suppression without a reason is caught. Never deployed.

resource insecure 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_206
  name: 'canaryinsecure'
  location: 'westeurope'
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    minimumTlsVersion: 'TLS1_0'
    supportsHttpsTrafficOnly: false
    allowBlobPublicAccess: true
  }
}
