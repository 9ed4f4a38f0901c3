// One Event Grid subscription per entry of infra/event-subscriptions.json whose topic is this
// module's topic ('storage' or 'ml'). That file is the single definition of the subscriptions:
// the local router (core/adapters/eventgrid_subscriptions.py) loads the same file, so local
// routing and Azure cannot drift apart. Deployed with scope: the resource group of the system topic.
//
// Endpoint type: WebHook to the Functions Event Grid extension,
//   https://<host>/runtime/webhooks/eventgrid?functionName=<function>&code=<eventgrid_extension key>
// rather than endpointType 'AzureFunction' (resourceId of <site>/functions/<name>), because:
//  - it is the delivery path Microsoft documents for every hosting plan and uses in its Flex
//    Consumption samples (webhook + extension system key, created after the code is deployed);
//  - 'AzureFunction' resolves the function through the ARM function list of the site, which
//    for Python v2 (worker-indexed) apps on Flex Consumption is only filled after a trigger
//    sync; the webhook depends on nothing but the running host;
//  - it is the exact URL the local host serves (/runtime/webhooks/eventgrid?functionName=...),
//    and the one the post-deploy smoke check (.github/workflows/deploy.yml) exercises with a
//    SubscriptionValidation handshake.
// Its cost: the URL carries a secret (the extension's system key). It is written only into the
// subscription (Event Grid never returns the query string) and rotated as docs/deploy.md says.
// Not verified here against Azure (no access from this machine): see docs/deploy.md.
//
// The eventgrid_extension system key exists only once the host has loaded an Event Grid
// trigger, i.e. after the code is deployed: main.bicep deploys this module only when
// deployEventSubscriptions is true (the deploy workflow's second infrastructure pass).

@allowed([
  'storage'
  'ml'
])
param topic string

param systemTopicName string

param functionAppName string
param functionAppResourceGroup string

param deadLetterStorageAccountId string
param deadLetterContainerName string

@description('Delivery attempts before an event is dead-lettered (Event Grid default 30).')
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int

@description('Minutes an event is retried before it is dead-lettered (Event Grid default 1440).')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int

var definitions = loadJsonContent('../event-subscriptions.json').subscriptions
var subscriptions = filter(definitions, sub => sub.topic == topic)

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
  scope: resourceGroup(functionAppResourceGroup)
}

resource functionHost 'Microsoft.Web/sites/host@2024-04-01' existing = {
  parent: site
  name: 'default'
}

resource eventSubscriptions 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = [for sub in subscriptions: {
  parent: systemTopic
  name: sub.name
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: 'https://${site.properties.defaultHostName}/runtime/webhooks/eventgrid?functionName=${sub.function}&code=${functionHost.listKeys().systemKeys.eventgrid_extension}'
        // One event per request: a failure redelivers only that event (the ledger dedups anyway).
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: sub.includedEventTypes
      subjectBeginsWith: sub.?subjectBeginsWith ?? ''
      subjectEndsWith: sub.?subjectEndsWith ?? ''
      isSubjectCaseSensitive: false
      enableAdvancedFilteringOnArrays: true
      advancedFilters: sub.?advancedFilters ?? []
    }
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
    // Events that exhaust their retries, or that the app rejects with 400/413, land in the
    // dead-letter container, written with the system topic's own identity.
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterStorageAccountId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}]

output names array = [for (sub, i) in subscriptions: eventSubscriptions[i].name]
