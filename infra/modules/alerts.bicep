// EXAMPLE, off by default (main.bicep: enableAlertExample): an action group that posts Azure
// Monitor alerts in the common alert schema to the app's HTTP function, and one metric alert rule
// on an existing Azure ML online endpoint feeding it.
//
// The HTTP function (POST /api/alerts/azure-monitor) is not part of the app yet, so the route is a
// parameter and the example stays off: tests/infra fails if a parameter file turns the example on
// while the app declares no HTTP function with that route.

param namePrefix string
param tags object

param functionAppName string

@description('Route of the HTTP function taking common-schema alerts, without the /api/ prefix.')
param alertRoute string

param workspaceName string
param workspaceResourceGroup string

@description('Online endpoint whose latency is watched.')
param onlineEndpointName string

@description('Average request latency, in milliseconds, above which the alert fires.')
param latencyThresholdMs int

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource functionHost 'Microsoft.Web/sites/host@2024-04-01' existing = {
  parent: site
  name: 'default'
}

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-04-01' existing = {
  name: workspaceName
  scope: resourceGroup(workspaceResourceGroup)
}

resource onlineEndpoint 'Microsoft.MachineLearningServices/workspaces/onlineEndpoints@2024-04-01' existing = {
  parent: workspace
  name: onlineEndpointName
}

resource actionGroup 'Microsoft.Insights/actionGroups@2022-04-01' = {
  name: '${namePrefix}-reactor'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'reactor'
    enabled: true
    webhookReceivers: [
      {
        name: 'mlops-reactor'
        // Function-level auth: the host's default function key (rotate as docs/deploy.md says,
        // then redeploy so the action group gets the new key).
        serviceUri: 'https://${site.properties.defaultHostName}/api/${alertRoute}?code=${functionHost.listKeys().functionKeys.default}'
        useCommonAlertSchema: true
        useAadAuth: false
      }
    ]
  }
}

resource latencyAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${namePrefix}-${onlineEndpointName}-latency'
  location: 'global'
  tags: tags
  properties: {
    description: 'Average request latency of online endpoint ${onlineEndpointName} above ${latencyThresholdMs} ms.'
    severity: 2
    enabled: true
    scopes: [
      onlineEndpoint.id
    ]
    evaluationFrequency: 'PT1M'
    windowSize: 'PT5M'
    targetResourceType: 'Microsoft.MachineLearningServices/workspaces/onlineEndpoints'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'latency'
          metricNamespace: 'Microsoft.MachineLearningServices/workspaces/onlineEndpoints'
          metricName: 'RequestLatency'
          operator: 'GreaterThan'
          threshold: latencyThresholdMs
          timeAggregation: 'Average'
        }
      ]
    }
    // Resolved notifications too (monitorCondition Resolved in the common schema).
    autoMitigate: true
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}

output actionGroupId string = actionGroup.id
