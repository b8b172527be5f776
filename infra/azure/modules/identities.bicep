// Three user-assigned identities, each holding only what its holder needs:
// - api: blob data and user-delegation SAS, its secrets, pulling its image;
// - worker: the same, plus container groups in the job resource group and handing the
//   job identity to the groups it creates;
// - job: attached to each job container group only so ACI can pull the compositor image
//   (AcrPull); the container itself gets its inputs and output as SAS URLs.
param location string
param namePrefix string

resource api 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${namePrefix}-api'
  location: location
}

resource worker 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${namePrefix}-worker'
  location: location
}

resource job 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${namePrefix}-job'
  location: location
}

output apiIdentityName string = api.name
output workerIdentityName string = worker.name
output workerPrincipalId string = worker.properties.principalId
output jobIdentityName string = job.name
