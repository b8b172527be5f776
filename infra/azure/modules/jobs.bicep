// The job resource group: a custom role that can manage container groups and nothing
// else, assignable only here, given to the task managers' identity.
param workerPrincipalId string

resource containerGroupManager 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'clipyard-container-group-manager')
  properties: {
    roleName: 'clipyard container group manager (${resourceGroup().name})'
    description: 'Create, watch, stop and delete ACI container groups in one resource group.'
    type: 'CustomRole'
    assignableScopes: [resourceGroup().id]
    permissions: [
      {
        actions: [
          // create (If-None-Match: *), get, list_by_resource_group
          'Microsoft.ContainerInstance/containerGroups/read'
          'Microsoft.ContainerInstance/containerGroups/write'
          'Microsoft.ContainerInstance/containerGroups/delete'
          'Microsoft.ContainerInstance/containerGroups/stop/action'
          'Microsoft.ContainerInstance/containerGroups/containers/logs/read'
        ]
        notActions: []
      }
    ]
  }
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, workerPrincipalId, containerGroupManager.id)
  properties: {
    roleDefinitionId: containerGroupManager.id
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
  }
}
