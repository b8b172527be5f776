// clipyard on Azure: the application's resource group (storage, registry, Postgres, Redis,
// Key Vault, Container Apps) and the job resource group where the task managers create
// one ACI container group per job attempt, and nothing else.
//
//   az deployment sub create --location eastus \
//     --template-file infra/azure/main.bicep --parameters infra/azure/main.parameters.json \
//     --parameters postgresAdminPassword=... apiSecretKey=...
//
// See README.md, "Deploying", for the whole sequence (images, first operator, scaling).
targetScope = 'subscription'

@description('Region of every resource, and of the job container groups (CLIPYARD_ACI_LOCATION).')
param location string = 'eastus'

@description('Prefix of resource names (lowercase letters and digits, 3-11 characters).')
@minLength(3)
@maxLength(11)
param namePrefix string = 'clipyard'

@description('Resource group for the application\'s resources.')
param appResourceGroupName string = '${namePrefix}-app'

@description('Resource group that holds only the job container groups (CLIPYARD_ACI_RESOURCE_GROUP).')
param jobResourceGroupName string = '${namePrefix}-jobs'

@description('False on the first run (creates the registry); true once the images are pushed.')
param deployApps bool = true

@description('Tag of the clipyard-api and clipyard-worker images in the registry.')
param imageTag string = 'latest'

@description('The compositor image in the registry, unqualified (CLIPYARD_COMPOSITOR_IMAGE).')
param compositorImage string = 'clipyard/compositor:latest'

@description('Days a job\'s outputs (video, poster) are kept before the lifecycle rule deletes them.')
@minValue(1)
param outputRetentionDays int = 30

@description('Days a job attempt\'s full container log is kept.')
@minValue(1)
param logRetentionDays int = 90

@description('PostgreSQL administrator login (the application connects as this role).')
param postgresAdminLogin string = 'clipyard'

@secure()
@description('PostgreSQL administrator password: pass it on the command line; it is kept in Key Vault.')
param postgresAdminPassword string

@secure()
@description('Key that signs browser sessions (CLIPYARD_SECRET_KEY); kept in Key Vault.')
param apiSecretKey string

@description('PostgreSQL Flexible Server compute size and tier.')
param postgresSkuName string = 'Standard_B1ms'
@allowed(['Burstable', 'GeneralPurpose', 'MemoryOptimized'])
param postgresSkuTier string = 'Burstable'

@description('Azure Cache for Redis size: Basic or Standard (Standard has a replica and an SLA).')
@allowed(['Basic', 'Standard'])
param redisSkuName string = 'Standard'
@minValue(0)
@maxValue(6)
param redisCapacity int = 1

@description('Replicas of each task-manager pool, and task managers per replica (clipyard worker --processes).')
@minValue(1)
param interactiveWorkerReplicas int = 1
@minValue(1)
param batchWorkerReplicas int = 1
@minValue(1)
param managersPerReplica int = 4

@description('API replicas: at least, and at most (scaled on concurrent requests).')
@minValue(1)
param apiMinReplicas int = 1
@minValue(1)
param apiMaxReplicas int = 3

@description('Anyone may create an account (CLIPYARD_ALLOW_SIGNUP).')
param allowSignup bool = false

@description('Prices per hour of ACI Linux (CLIPYARD_PRICE_PER_VCPU_HOUR, CLIPYARD_PRICE_PER_GB_HOUR), as strings.')
param pricePerVcpuHour string = '0.0405'
param pricePerGbHour string = '0.00445'

@description('Global admission caps across every manager.')
@minValue(1)
param maxConcurrentContainers int = 100
param maxTotalCpu string = '100'
@minValue(1)
param containerCreatesPer5min int = 100
@minValue(1)
param containerCreatesPerHour int = 300

@description('Batch jobs run on Spot capacity unless they ask otherwise.')
param isSpotDefaultForBatches bool = false

resource appGroup 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: appResourceGroupName
  location: location
}

resource jobGroup 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: jobResourceGroupName
  location: location
}

module identities 'modules/identities.bicep' = {
  scope: appGroup
  name: 'clipyard-identities'
  params: {
    location: location
    namePrefix: namePrefix
  }
}

// The workers' identity may create, read, stop and delete container groups in the job
// resource group only.
module jobAccess 'modules/jobs.bicep' = {
  scope: jobGroup
  name: 'clipyard-job-access'
  params: {
    workerPrincipalId: identities.outputs.workerPrincipalId
  }
}

module app 'modules/app.bicep' = {
  scope: appGroup
  name: 'clipyard-app'
  dependsOn: [jobAccess]
  params: {
    location: location
    namePrefix: namePrefix
    jobResourceGroupName: jobGroup.name
    deployApps: deployApps
    imageTag: imageTag
    compositorImage: compositorImage
    outputRetentionDays: outputRetentionDays
    logRetentionDays: logRetentionDays
    postgresAdminLogin: postgresAdminLogin
    postgresAdminPassword: postgresAdminPassword
    apiSecretKey: apiSecretKey
    postgresSkuName: postgresSkuName
    postgresSkuTier: postgresSkuTier
    redisSkuName: redisSkuName
    redisCapacity: redisCapacity
    interactiveWorkerReplicas: interactiveWorkerReplicas
    batchWorkerReplicas: batchWorkerReplicas
    managersPerReplica: managersPerReplica
    apiMinReplicas: apiMinReplicas
    apiMaxReplicas: apiMaxReplicas
    allowSignup: allowSignup
    pricePerVcpuHour: pricePerVcpuHour
    pricePerGbHour: pricePerGbHour
    maxConcurrentContainers: maxConcurrentContainers
    maxTotalCpu: maxTotalCpu
    containerCreatesPer5min: containerCreatesPer5min
    containerCreatesPerHour: containerCreatesPerHour
    isSpotDefaultForBatches: isSpotDefaultForBatches
    apiIdentityName: identities.outputs.apiIdentityName
    workerIdentityName: identities.outputs.workerIdentityName
    jobIdentityName: identities.outputs.jobIdentityName
  }
}

output apiUrl string = app.outputs.apiUrl
output registryLoginServer string = app.outputs.registryLoginServer
output keyVaultName string = app.outputs.keyVaultName
output storageAccountName string = app.outputs.storageAccountName
output jobResourceGroup string = jobGroup.name
