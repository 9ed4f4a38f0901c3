// Role assignments in the EXISTING Azure ML workspace's resource group (this module is deployed
// with scope: resourceGroup(mlWorkspaceResourceGroup)), for the Function App identity:
//   workspace             AzureML Data Scientist  register models, submit jobs, manage online
//                                                 endpoints and their traffic (no workspace admin)
//   workspace's group     Monitoring Reader       read the metrics of the online endpoints and
//                                                 the workspace it watches (read only)

param workspaceName string
param functionPrincipalId string

var azureMlDataScientist = 'f6c7c914-8db3-469d-8ca1-694a8f32e121' // AzureML Data Scientist
var monitoringReader = '43d0d8ad-25c7-4714-9337-8ba259a9fe05' // Monitoring Reader

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-04-01' existing = {
  name: workspaceName
}

resource dataScientist 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, functionPrincipalId, azureMlDataScientist)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', azureMlDataScientist)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource metricsReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, functionPrincipalId, monitoringReader)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringReader)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}
