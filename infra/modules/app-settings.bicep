// The Function App's app settings, applied once its identity can reach storage and Key Vault.
// This resource replaces the whole set: every setting the app needs is listed here or in the
// objects main.bicep passes in (tests/infra checks them against core.settings.SETTINGS).

param functionAppName string

@description('Runtime storage account name: the Functions host reaches it with its identity.')
param runtimeStorageName string

param appInsightsConnectionString string

@description('Settings of the app itself (core.settings.SETTINGS): name -> value.')
param reactorSettings object

@description('Secret settings of the app: name -> Key Vault reference (@Microsoft.KeyVault(...)).')
param reactorSecretSettings object

@description('Secret settings the platform itself reads (the Easy Auth client secret): name -> Key Vault reference.')
param platformSecretSettings object = {}

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

var runtimeSettings = {
  // Host storage through the managed identity: no connection string, no account key.
  AzureWebJobsStorage__accountName: runtimeStorageName
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  // Application Insights has local auth disabled: the host authenticates with its identity.
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD'
}

resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // Checkov reads every Microsoft.Web/sites/config resource as the 'web' site configuration; this
  // one is the 'appsettings' name/value list, so the checks skipped here do not apply to it.
  // checkov:skip=CKV_AZURE_13:Not a site configuration (appsettings list). App Service Authentication is configured by easy-auth.bicep (authsettingsV2, enableEasyAuth), letting key-only callers such as Event Grid through.
  // checkov:skip=CKV_AZURE_63:Not a site configuration (appsettings list). App Service HTTP logs are file-system logs of web apps; the Functions host sends requests, traces and failures to Application Insights.
  parent: site
  // checkov:skip=CKV_AZURE_65:Not a site configuration (appsettings list). Detailed error pages are a web app feature; function failures are traced in Application Insights.
  // checkov:skip=CKV_AZURE_66:Not a site configuration (appsettings list). Failed request tracing is a web app (IIS) feature; failed invocations are in Application Insights.
  // checkov:skip=CKV_AZURE_80:Not a site configuration (appsettings list), and the app is Python 3.11, not .NET.
  // checkov:skip=CKV_AZURE_88:Not a site configuration (appsettings list). Flex Consumption reads the package from a blob container and mounts no Azure Files share.
  name: 'appsettings'
  // checkov:skip=CKV_AZURE_222:Not a site configuration (appsettings list); public network access of the site is explained in functionapp.bicep.
  properties: union(runtimeSettings, reactorSettings, reactorSecretSettings, platformSecretSettings)
}
