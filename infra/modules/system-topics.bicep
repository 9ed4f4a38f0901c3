// Event Grid system topics: one on the data storage account, one on the existing Azure ML
// workspace (unless the workspace already has one: a source can have a single system topic, so
// main.bicep then reuses it through mlSystemTopicName). Each topic has a system-assigned
// identity, used to write dead-lettered events to the dead-letter container.

param location string
param tags object

param storageTopicName string
param storageAccountId string

param createMlTopic bool
param mlTopicName string
param workspaceId string

@description('A system topic lives in the region of its source: the region of the workspace.')
param workspaceLocation string

resource storageTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: storageTopicName
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: storageAccountId
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

resource mlTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = if (createMlTopic) {
  name: mlTopicName
  location: workspaceLocation
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: workspaceId
    topicType: 'Microsoft.MachineLearningServices.Workspaces'
  }
}

output storageTopicName string = storageTopic.name
output storageTopicPrincipalId string = storageTopic.identity.principalId
output mlTopicPrincipalId string = createMlTopic ? mlTopic.identity.principalId : ''
