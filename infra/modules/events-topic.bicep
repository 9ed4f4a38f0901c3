// The custom Event Grid topic our own events go to (mlops.reactor.RetrainStarted, ReleasePromoted,
// AlertFired... as CloudEvents 1.0; README "Our own events"), so other systems can subscribe.
// Local auth (topic keys and SAS tokens) is disabled: only Microsoft Entra identities publish,
// and the Function App's identity holds EventGrid Data Sender on this topic alone.

param name string
param location string
param tags object

@description('Principal id of the Function App identity that publishes.')
param functionPrincipalId string

var eventGridDataSender = 'd5a91429-5739-47e2-a06b-3470a27159e7' // EventGrid Data Sender

resource topic 'Microsoft.EventGrid/topics@2022-06-15' = {
  name: name
  location: location
  tags: tags
  // For the subscriptions' own needs (delivery or dead-lettering with the topic's identity); the
  // app publishes with its identity, not this one.
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    // checkov:skip=CKV_AZURE_193:subscribers outside a VNet (webhooks, other apps) and the Flex Consumption app without VNet integration reach the topic over its public endpoint; only Entra identities with a data role can publish (local auth disabled)
    publicNetworkAccess: 'Enabled'
  }
}

resource sender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(topic.id, functionPrincipalId, eventGridDataSender)
  scope: topic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSender)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output id string = topic.id
output name string = topic.name
output endpoint string = topic.properties.endpoint
