// mlops-reactor: the Azure resources of the event-driven MLOps loop. Deploy into an existing
// resource group (docs/deploy.md):
//   az deployment group create -g <group> -f infra/main.bicep -p infra/main.<env>.parameters.json
//
//   data storage account --BlobCreated--> Event Grid system topic --webhook--> Function App
//   Azure ML workspace  --Model*/Run*/Drift--> Event Grid system topic --webhook--> Function App
//   undeliverable events --> dead-letter container (written with each system topic's identity)
//   Function App --our own CloudEvents (managed identity)--> custom topic <appName>-events --> your subscribers
//
// First deployment: pass deployEventSubscriptions=false, publish the code, then deploy again with
// true (the Event Grid extension key the subscriptions use exists only once the code runs). The
// deploy workflow always runs these three steps, so every push ends with the subscriptions in sync.

targetScope = 'resourceGroup'

@description('Name of the Function App (its host name is <appName>.azurewebsites.net, so it must be globally unique) and prefix of the other resource names.')
@minLength(3)
@maxLength(32)
param appName string

@description('Environment tag and the parameter file it comes from.')
@allowed([
  'dev'
  'prod'
])
param environmentName string

@description('Region of the resources (the ML system topic always follows the workspace region).')
param location string = resourceGroup().location

@description('Extra tags for every resource.')
param tags object = {}

@description('Name of the EXISTING Azure ML workspace whose events drive the loop.')
param mlWorkspaceName string

@description('Resource group of the existing Azure ML workspace (in the subscription of the deployment).')
param mlWorkspaceResourceGroup string

@description('Name of an existing Event Grid system topic of the workspace, to reuse it (a source can have only one system topic; it must have a system-assigned identity). Empty: create one.')
param mlSystemTopicName string = ''

@description('Resource group of the existing ML system topic (only with mlSystemTopicName).')
param mlSystemTopicResourceGroup string = mlWorkspaceResourceGroup

@description('Create the Event Grid subscriptions. false on the very first deployment, before the code is published (see the header).')
param deployEventSubscriptions bool = true

@description('Replication of both storage accounts.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param storageSku string = 'Standard_ZRS'

@description('Days deleted blobs and containers can be restored.')
@minValue(1)
@maxValue(365)
param softDeleteRetentionDays int = 7

@description('Days Log Analytics keeps logs and telemetry.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

@description('Memory of each Flex Consumption instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Upper bound on Flex Consumption scale-out.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('REACTOR_TABLE_PREFIX: prefix of the ledger tables and of the internal containers (<prefix>-internal, <prefix>-deadletter).')
@minLength(1)
@maxLength(31)
param tablePrefix string = 'reactor'

@description('REACTOR_DATA_CONTAINER: blob container where new training data lands.')
@minLength(3)
@maxLength(63)
param dataContainerName string = 'data'

@description('REACTOR_COLLECT_CONTAINER: blob container of the collected inference data (the deployments\' data_collector writes it through a datastore; see docs/deploy.md). Excluded from BlobCreated routing by name in infra/event-subscriptions.json.')
@minLength(3)
@maxLength(63)
param collectContainerName string = 'inference-data'

@description('REACTOR_LABELS_CONTAINER: blob container where late labels land (CSV or JSON lines: request_id, observed).')
@minLength(3)
@maxLength(63)
param labelsContainerName string = 'labels'

@description('REACTOR_LABELS_LOOKBACK_HOURS: how far back a labels file\'s request ids are looked up in the collected data.')
@minValue(1)
@maxValue(2160)
param labelsLookbackHours int = 24

@description('REACTOR_LIVE_QUALITY_WINDOW_HOURS: the window of the live RMSE and MAE in the status.')
@minValue(1)
@maxValue(2160)
param liveQualityWindowHours int = 24

@description('REACTOR_CLAIM_LEASE_SECONDS: how long an event claim protects in-flight work.')
@minValue(5)
@maxValue(86400)
param claimLeaseSeconds int = 300

@description('REACTOR_LOG_LEVEL.')
@allowed([
  'DEBUG'
  'INFO'
  'WARNING'
  'ERROR'
])
param logLevel string = 'INFO'

@description('REACTOR_RETRAIN_POLICIES: model name -> retraining policy (see local.settings.sample.json). Empty: nothing is retrained automatically.')
param retrainPolicies object = {}

@description('REACTOR_RETRAIN_TICK_SCHEDULE: NCRONTAB (six fields, seconds first) of the retraining timer. Each tick wakes an instance: once a minute by default (the local default of the app, every 10 s, would keep an instance busy).')
param retrainTickSchedule string = '0 * * * * *'

@description('REACTOR_RELEASE_POLICIES: model name -> release policy (endpoints, smoke test, approval, canary steps; see local.settings.sample.json). Empty: registered models are not released.')
param releasePolicies object = {}

@description('REACTOR_RELEASE_TICK_SCHEDULE: NCRONTAB of the timer that advances releases (deployment polling, canary steps, approval expiry). Every 30 s: a canary step is health-checked at most this late.')
param releaseTickSchedule string = '*/30 * * * * *'

@description('REACTOR_NOTIFY_ROUTES: notification receivers and routes (see local.settings.sample.json). Receiver secrets go in reactorSecretSettings as Key Vault references (REACTOR_NOTIFY_SECRET_<NAME>).')
param notifyRoutes object = {}

@description('REACTOR_OUTBOX_DRAIN_SCHEDULE: NCRONTAB of the timer that delivers stored notifications.')
param outboxDrainSchedule string = '*/30 * * * * *'

@description('REACTOR_OUTBOX_RETENTION_HOURS: hours delivered and rejected notifications stay in the outbox.')
@minValue(1)
@maxValue(8760)
param outboxRetentionHours int = 168

@description('REACTOR_ALERT_RULES: alert rules and routing (see local.settings.sample.json). Empty: none; Azure Monitor alerts posted to the app are still handled.')
param alertRules object = {}

@description('REACTOR_ALERTS_TICK_SCHEDULE: NCRONTAB of the timer that evaluates alert rules.')
param alertsTickSchedule string = '0 * * * * *'

@description('REACTOR_ALERTS_MAX_CONCURRENCY: Azure Monitor queries run at once.')
@minValue(1)
@maxValue(16)
param alertsMaxConcurrency int = 4

@description('REACTOR_CODE_VERSION: the commit being deployed (the workflow passes the git SHA); retraining jobs carry it as lineage.')
param codeVersion string = 'unknown'

@description('REACTOR_AML_COMPUTE: existing compute cluster of the workspace that runs the retraining pipeline.')
param amlComputeName string

@description('REACTOR_AML_EXPERIMENT: experiment the retraining jobs are grouped under.')
param amlExperimentName string = 'mlops-reactor'

@description('REACTOR_AML_DATASTORE: datastore of the workspace registered over the data storage account (see docs/deploy.md).')
param amlDatastoreName string

@description('Event Grid delivery attempts before dead-lettering.')
@minValue(1)
@maxValue(30)
param eventMaxDeliveryAttempts int = 30

@description('Minutes Event Grid retries an event before dead-lettering it.')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 1440

@description('Deploy the example action group + metric alert (modules/alerts.bicep). Off until the app has the alert HTTP function.')
param enableAlertExample bool = false

@description('Route of the HTTP function taking common-schema alerts, without /api/ (used only with enableAlertExample).')
param alertRoute string = 'alerts/azure-monitor'

@description('Existing online endpoint of the workspace watched by the example alert (only with enableAlertExample).')
param alertOnlineEndpointName string = ''

@description('Latency threshold of the example alert, in milliseconds.')
@minValue(1)
param alertLatencyThresholdMs int = 1000

@description('Turn on App Service authentication (Easy Auth) with Microsoft Entra ID (modules/easy-auth.bicep): admin roles (approver, operator) then come from the signed-in caller\'s app roles. Off: nobody holds a role in Azure (approve, reject, rollback, silences and replay answer 403).')
param enableEasyAuth bool = false

@description('Application (client) id of the Entra ID app registration of the app (only with enableEasyAuth; docs/deploy.md).')
param easyAuthClientId string = ''

@description('Entra ID tenant of that app registration (only with enableEasyAuth).')
param easyAuthTenantId string = tenant().tenantId

@description('Name of the Key Vault secret holding the app registration\'s client secret, for the browser sign-in flow (only with enableEasyAuth). Empty: only bearer tokens presented by callers are accepted.')
param easyAuthClientSecretName string = ''

var allTags = union(tags, {
  application: 'mlops-reactor'
  environment: environmentName
})

var cleanName = toLower(replace(appName, '-', ''))
var token = uniqueString(resourceGroup().id, appName)
var runtimeStorageName = '${take('str${cleanName}', 11)}${token}'
var dataStorageName = '${take('std${cleanName}', 11)}${token}'
var keyVaultName = '${take('kv${cleanName}', 10)}-${token}'
var deploymentContainerName = 'app-package'
var internalContainerName = '${toLower(tablePrefix)}-internal'
var deadLetterContainerName = '${toLower(tablePrefix)}-deadletter'

var createMlTopic = empty(mlSystemTopicName)
var mlTopicName = createMlTopic ? '${appName}-ml-events' : mlSystemTopicName
var mlTopicResourceGroup = createMlTopic ? resourceGroup().name : mlSystemTopicResourceGroup

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-04-01' existing = {
  name: mlWorkspaceName
  scope: resourceGroup(mlWorkspaceResourceGroup)
}

resource existingMlTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: mlTopicName
  scope: resourceGroup(mlTopicResourceGroup)
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    namePrefix: appName
    location: location
    tags: allTags
    retentionInDays: logRetentionInDays
  }
}

// Functions host storage (AzureWebJobsStorage) and the Flex deployment package. Kept apart from the
// data account so host blobs (locks, keys, packages) raise no BlobCreated events for the app.
module runtimeStorage 'modules/storage.bicep' = {
  name: 'runtime-storage'
  params: {
    name: runtimeStorageName
    location: location
    tags: allTags
    skuName: storageSku
    containers: [
      deploymentContainerName
    ]
    softDeleteRetentionDays: softDeleteRetentionDays
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
}

// The app's storage: ledger tables (created by the app), training data, internal blobs, and the
// Event Grid dead letters. Every container but the data and labels containers is excluded from BlobCreated
// routing by the subscription filters (tests/infra checks it with the app's own router).
module dataStorage 'modules/storage.bicep' = {
  name: 'data-storage'
  params: {
    name: dataStorageName
    location: location
    tags: allTags
    skuName: storageSku
    containers: [
      dataContainerName
      internalContainerName
      deadLetterContainerName
      collectContainerName
      labelsContainerName
    ]
    softDeleteRetentionDays: softDeleteRetentionDays
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'key-vault'
  params: {
    name: keyVaultName
    location: location
    tags: allTags
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'function-app'
  params: {
    name: appName
    location: location
    tags: allTags
    runtimeBlobEndpoint: runtimeStorage.outputs.blobEndpoint
    deploymentContainerName: deploymentContainerName
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
  }
}

module topics 'modules/system-topics.bicep' = {
  name: 'system-topics'
  params: {
    location: location
    tags: allTags
    storageTopicName: '${appName}-storage-events'
    storageAccountId: dataStorage.outputs.id
    createMlTopic: createMlTopic
    mlTopicName: mlTopicName
    workspaceId: workspace.id
    workspaceLocation: workspace.location
  }
}

module roles 'modules/roles.bicep' = {
  name: 'roles'
  params: {
    functionPrincipalId: functionApp.outputs.principalId
    runtimeStorageName: runtimeStorageName
    dataStorageName: dataStorageName
    deadLetterContainerName: deadLetterContainerName
    keyVaultName: keyVaultName
    appInsightsName: monitoring.outputs.appInsightsName
    topicPrincipalIds: [
      topics.outputs.storageTopicPrincipalId
      createMlTopic ? topics.outputs.mlTopicPrincipalId : existingMlTopic.identity.principalId
    ]
  }
  dependsOn: [
    runtimeStorage
    dataStorage
    keyVault
  ]
}

// Our own events (CloudEvents 1.0): the app publishes its decisions here with its identity.
module eventsTopic 'modules/events-topic.bicep' = {
  name: 'events-topic'
  params: {
    name: '${appName}-events'
    location: location
    tags: allTags
    functionPrincipalId: functionApp.outputs.principalId
  }
}

module mlAccess 'modules/ml-access.bicep' = {
  name: 'ml-access-${appName}'
  scope: resourceGroup(mlWorkspaceResourceGroup)
  params: {
    workspaceName: mlWorkspaceName
    functionPrincipalId: functionApp.outputs.principalId
  }
}

// Every setting in core.settings.SETTINGS but the local-platform-only REACTOR_LOCAL_* ones, and
// nothing else named REACTOR_* (tests/infra checks both ways, that local.settings.sample.json
// documents each one, and that these values pass the app's own validation).
var reactorSettings = {
  // Empty in Azure: the app reaches storage with its managed identity through REACTOR_STORAGE_ACCOUNT.
  REACTOR_STORAGE_CONNECTION: ''
  REACTOR_STORAGE_ACCOUNT: dataStorageName
  REACTOR_TABLE_PREFIX: tablePrefix
  // Exact resource ids: events from any other source are refused.
  REACTOR_STORAGE_EVENT_SOURCES: dataStorage.outputs.id
  REACTOR_ML_EVENT_SOURCES: workspace.id
  REACTOR_DATA_CONTAINER: dataContainerName
  REACTOR_CLAIM_LEASE_SECONDS: string(claimLeaseSeconds)
  REACTOR_LOG_LEVEL: logLevel
  REACTOR_RETRAIN_POLICIES: string(retrainPolicies)
  REACTOR_RETRAIN_TICK_SCHEDULE: retrainTickSchedule
  REACTOR_RELEASE_POLICIES: string(releasePolicies)
  REACTOR_RELEASE_TICK_SCHEDULE: releaseTickSchedule
  REACTOR_CODE_VERSION: codeVersion
  REACTOR_NOTIFY_ROUTES: string(notifyRoutes)
  REACTOR_OUTBOX_DRAIN_SCHEDULE: outboxDrainSchedule
  REACTOR_OUTBOX_RETENTION_HOURS: string(outboxRetentionHours)
  REACTOR_ALERT_RULES: string(alertRules)
  REACTOR_ALERTS_TICK_SCHEDULE: alertsTickSchedule
  // Rule values come from Azure Monitor in the region of the deployment.
  REACTOR_ALERTS_SOURCE: 'azure'
  REACTOR_ALERTS_METRICS_ENDPOINT: 'https://${location}.metrics.monitor.azure.com'
  REACTOR_ALERTS_MAX_CONCURRENCY: string(alertsMaxConcurrency)
  // Admin roles come only from App Service authentication (Easy Auth) in Azure: the app cannot
  // see which function key a caller used, so a key never grants a role there. true only when
  // Easy Auth is configured below: without it a client could send X-MS-CLIENT-PRINCIPAL itself.
  REACTOR_EASY_AUTH: string(enableEasyAuth)
  REACTOR_ROLE_MAP: ''
  // Azure ML through the app's identity (AzureML Data Scientist on the workspace, ml-access.bicep).
  REACTOR_ML_PLATFORM: 'azure'
  REACTOR_AML_SUBSCRIPTION_ID: subscription().subscriptionId
  REACTOR_AML_RESOURCE_GROUP: mlWorkspaceResourceGroup
  REACTOR_AML_WORKSPACE: mlWorkspaceName
  REACTOR_AML_COMPUTE: amlComputeName
  REACTOR_AML_EXPERIMENT: amlExperimentName
  REACTOR_AML_DATASTORE: amlDatastoreName
  // Our own events go to the custom topic with the app's identity (EventGrid Data Sender, events-topic.bicep);
  // the source is the app's resource id, stable for the life of the app.
  REACTOR_EVENTS_TOPIC_ENDPOINT: eventsTopic.outputs.endpoint
  REACTOR_EVENTS_SOURCE: functionApp.outputs.id
  // The feedback loop: collected inference data and late labels, both in the data account.
  REACTOR_COLLECT_CONTAINER: collectContainerName
  REACTOR_LABELS_CONTAINER: labelsContainerName
  REACTOR_LABELS_LOOKBACK_HOURS: string(labelsLookbackHours)
  REACTOR_LIVE_QUALITY_WINDOW_HOURS: string(liveQualityWindowHours)
  // Azure ML model monitoring checks drift in Azure and signals it through Event Grid; the app's
  // own check is for the embedded default, so its timer does nothing here (once a day).
  REACTOR_DRIFT_CHECK: 'off'
  REACTOR_DRIFT_CHECK_SCHEDULE: '0 0 0 * * *'
  REACTOR_DRIFT_MONITORS: ''
}

// Secret settings: Key Vault references, resolved by the platform with the app's identity (Key
// Vault Secrets User), so no secret value is ever in a template, a parameter file or a deployment
// history. Set the secret first (docs/deploy.md), then add one line per setting, e.g.:
//   REACTOR_TEAMS_WEBHOOK_URL: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=teams-webhook-url)'
// A reference without a version follows the latest version of the secret (refreshed within 24 h,
// or at once on a restart).
var reactorSecretSettings = {}

// Easy Auth reads the client secret from the app setting MICROSOFT_PROVIDER_AUTHENTICATION_SECRET
// (a Key Vault reference, never a value).
var useEasyAuthSecret = enableEasyAuth && !empty(easyAuthClientSecretName)

module appSettings 'modules/app-settings.bicep' = {
  name: 'app-settings'
  params: {
    functionAppName: functionApp.outputs.name
    runtimeStorageName: runtimeStorageName
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    reactorSettings: reactorSettings
    reactorSecretSettings: reactorSecretSettings
    platformSecretSettings: useEasyAuthSecret ? {
      MICROSOFT_PROVIDER_AUTHENTICATION_SECRET: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${easyAuthClientSecretName})'
    } : {}
  }
  dependsOn: [
    roles
    mlAccess
    eventsTopic
  ]
}

module easyAuth 'modules/easy-auth.bicep' = if (enableEasyAuth) {
  name: 'easy-auth'
  params: {
    functionAppName: functionApp.outputs.name
    clientId: easyAuthClientId
    tenantId: easyAuthTenantId
    clientSecretSettingName: useEasyAuthSecret ? 'MICROSOFT_PROVIDER_AUTHENTICATION_SECRET' : ''
  }
  dependsOn: [
    appSettings
  ]
}

module storageSubscriptions 'modules/event-subscriptions.bicep' = if (deployEventSubscriptions) {
  name: 'storage-event-subscriptions'
  params: {
    topic: 'storage'
    systemTopicName: topics.outputs.storageTopicName
    functionAppName: functionApp.outputs.name
    functionAppResourceGroup: resourceGroup().name
    deadLetterStorageAccountId: dataStorage.outputs.id
    deadLetterContainerName: deadLetterContainerName
    maxDeliveryAttempts: eventMaxDeliveryAttempts
    eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
  }
  dependsOn: [
    roles
    appSettings
  ]
}

module mlSubscriptions 'modules/event-subscriptions.bicep' = if (deployEventSubscriptions) {
  name: 'ml-event-subscriptions-${appName}'
  scope: resourceGroup(mlTopicResourceGroup)
  params: {
    topic: 'ml'
    systemTopicName: mlTopicName
    functionAppName: functionApp.outputs.name
    functionAppResourceGroup: resourceGroup().name
    deadLetterStorageAccountId: dataStorage.outputs.id
    deadLetterContainerName: deadLetterContainerName
    maxDeliveryAttempts: eventMaxDeliveryAttempts
    eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
  }
  dependsOn: [
    topics
    roles
    appSettings
  ]
}

module alerts 'modules/alerts.bicep' = if (enableAlertExample) {
  name: 'alert-example'
  params: {
    namePrefix: appName
    tags: allTags
    functionAppName: functionApp.outputs.name
    alertRoute: alertRoute
    workspaceName: mlWorkspaceName
    workspaceResourceGroup: mlWorkspaceResourceGroup
    onlineEndpointName: alertOnlineEndpointName
    latencyThresholdMs: alertLatencyThresholdMs
  }
  dependsOn: [
    appSettings
  ]
}

output functionAppName string = functionApp.outputs.name
output functionAppHostName string = functionApp.outputs.defaultHostName
output runtimeStorageAccountName string = runtimeStorageName
output dataStorageAccountName string = dataStorageName
output keyVaultName string = keyVaultName
output storageSystemTopicName string = topics.outputs.storageTopicName
output mlSystemTopicName string = mlTopicName
output mlSystemTopicResourceGroup string = mlTopicResourceGroup
output eventsTopicName string = eventsTopic.outputs.name
output eventsTopicEndpoint string = eventsTopic.outputs.endpoint
output eventSubscriptionsDeployed bool = deployEventSubscriptions
output easyAuthEnabled bool = enableEasyAuth
