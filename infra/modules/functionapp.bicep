// The Function App on the Flex Consumption plan (Linux, Python 3.11) with a system-assigned
// identity. Its app settings are applied by app-settings.bicep, after the identity's role
// assignments exist (the host needs them to reach its storage and Key Vault).
//
// Flex Consumption takes the runtime and version from functionAppConfig.runtime: the app settings
// FUNCTIONS_WORKER_RUNTIME and FUNCTIONS_EXTENSION_VERSION are rejected on this plan, and the
// package is read from the deployment blob container below (no WEBSITE_RUN_FROM_PACKAGE).

param name string
param location string
param tags object

@description('Blob endpoint of the runtime storage account (https://<account>.blob.<suffix>/).')
param runtimeBlobEndpoint string

@description('Container in the runtime storage account holding the deployment package.')
param deploymentContainerName string

@description('Memory of each instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int

@description('Upper bound on scale-out.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: '${name}-plan'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  // checkov:skip=CKV_AZURE_225:Zone redundancy of the Flex Consumption plan depends on the region; a zone outage only delays events here (Event Grid retries each delivery for up to 24 h, then dead-letters it). Enable zoneRedundant on the plan where the region supports it.
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  // checkov:skip=CKV_AZURE_222:Public endpoint required: Event Grid delivers to the webhook and Azure Monitor action groups post alerts over the internet, and this deployment has no VNet. Every function needs a key (Event Grid: the eventgrid_extension system key) except the anonymous GET /api/health.
  // checkov:skip=CKV_AZURE_17:Client certificates cannot be used: Event Grid webhooks and Azure Monitor action groups do not present one. Callers authenticate with function/system keys over HTTPS (TLS 1.2 minimum).
  // checkov:skip=CKV_AZURE_212:Flex Consumption scales from zero and the platform replaces lost instances; always-ready instances would cost money for no gain, since Event Grid retries failed deliveries (up to 24 h) and the ledger dedups redeliveries.
  // checkov:skip=CKV_AZURE_213:No App Service health-check probe: it would ping every minute and keep a billed instance alive on a scale-to-zero plan. GET /api/health exists and is called by the post-deploy smoke check (.github/workflows/deploy.yml).
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${runtimeBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

output id string = site.id
output name string = site.name
output defaultHostName string = site.properties.defaultHostName
output principalId string = site.identity.principalId
