// Key Vault for the app's secrets (notification webhook URLs, routing keys). RBAC mode only: the
// app's identity gets Key Vault Secrets User (roles.bicep) and reads secrets through Key Vault
// references in its app settings. Secret values are set out of band (docs/deploy.md), never here.

@description('Vault name: 3-24 letters, digits and hyphens, globally unique.')
@minLength(3)
@maxLength(24)
param name string

param location string
param tags object

@description('Log Analytics workspace receiving the vault audit log.')
param logAnalyticsWorkspaceId string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  // checkov:skip=CKV_AZURE_109:No VNet in this deployment: Key Vault references of an app without VNet integration are resolved over the public endpoint (App Service is not a trusted service of the Key Vault firewall). Access is RBAC only (Key Vault Secrets User for the app), audited to Log Analytics.
  // checkov:skip=CKV_AZURE_189:Same reason as CKV_AZURE_109: public network access is needed until the app gets VNet integration and the vault a private endpoint.
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForTemplateDeployment: false
    enabledForDiskEncryption: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource audit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
  }
}

output id string = vault.id
output name string = vault.name
