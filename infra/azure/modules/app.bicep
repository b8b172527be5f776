// The application's resource group: storage, registry, Postgres, Redis, Key Vault and the
// Container Apps (API and two task-manager pools). Parameters: see main.bicep.
param location string
param namePrefix string
param jobResourceGroupName string
param deployApps bool
param imageTag string
param compositorImage string
param outputRetentionDays int
param logRetentionDays int
param postgresAdminLogin string
@secure()
param postgresAdminPassword string
@secure()
param apiSecretKey string
param postgresSkuName string
param postgresSkuTier string
param redisSkuName string
param redisCapacity int
param interactiveWorkerReplicas int
param batchWorkerReplicas int
param managersPerReplica int
param apiMinReplicas int
param apiMaxReplicas int
param allowSignup bool
param pricePerVcpuHour string
param pricePerGbHour string
param maxConcurrentContainers int
param maxTotalCpu string
param containerCreatesPer5min int
param containerCreatesPerHour int
param isSpotDefaultForBatches bool
param apiIdentityName string
param workerIdentityName string
param jobIdentityName string

var suffix = uniqueString(resourceGroup().id)
// The one blob container of taskmanager/storage (CLIPYARD_AZURE_STORAGE_CONTAINER);
// inside it: uploads/, templates/, outputs/, logs/.
var blobContainerName = 'clipyard'
var databaseName = 'clipyard'

// Built-in roles.
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageBlobDelegator = 'db58b8e5-c6ad-4a2a-8342-4190687cbf4a'
var acrPull = '7f951dda-4ed3-4680-a7ca-43fe172d538d'
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
var managedIdentityOperator = 'f1a07417-d97a-45cb-824c-7a7467783830'

resource apiIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: apiIdentityName
}

resource workerIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: workerIdentityName
}

resource jobIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: jobIdentityName
}

// --- blob storage ------------------------------------------------------------------------

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: take('${namePrefix}${suffix}', 24)
  location: location
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    // Entra ID only: the code signs user delegation SAS, so no account key is needed.
    allowSharedKeyAccess: false
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource blobContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: blobContainerName
  properties: { publicAccess: 'None' }
}

resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'delete-outputs'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: { blobTypes: ['blockBlob'], prefixMatch: ['${blobContainerName}/outputs/'] }
            actions: { baseBlob: { delete: { daysAfterModificationGreaterThan: outputRetentionDays } } }
          }
        }
        {
          name: 'delete-logs'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: { blobTypes: ['blockBlob'], prefixMatch: ['${blobContainerName}/logs/'] }
            actions: { baseBlob: { delete: { daysAfterModificationGreaterThan: logRetentionDays } } }
          }
        }
      ]
    }
  }
}

// --- container registry (API, worker and compositor images) -----------------------------

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  name: take('${namePrefix}${suffix}', 50)
  location: location
  sku: { name: 'Standard' }
  properties: { adminUserEnabled: false }
}

// --- PostgreSQL Flexible Server ------------------------------------------------------------

resource postgres 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' = {
  name: '${namePrefix}-pg-${suffix}'
  location: location
  sku: { name: postgresSkuName, tier: postgresSkuTier }
  properties: {
    version: '16'
    administratorLogin: postgresAdminLogin
    administratorLoginPassword: postgresAdminPassword
    storage: { storageSizeGB: 32 }
    backup: { backupRetentionDays: 7, geoRedundantBackup: 'Disabled' }
    highAvailability: { mode: 'Disabled' }
  }
}

resource postgresDatabase 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2024-08-01' = {
  parent: postgres
  name: databaseName
  properties: { charset: 'UTF8', collation: 'en_US.utf8' }
}

// Container Apps on the Consumption plan have no fixed outbound address: allow Azure's
// services (0.0.0.0). Put the environment in a virtual network to narrow this.
resource postgresAllowAzure 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2024-08-01' = {
  parent: postgres
  name: 'AllowAllAzureServicesAndResourcesWithinAzureIps'
  properties: { startIpAddress: '0.0.0.0', endIpAddress: '0.0.0.0' }
}

// --- Azure Cache for Redis (wake-ups only; Postgres is the source of truth) --------------

resource redis 'Microsoft.Cache/redis@2024-03-01' = {
  name: '${namePrefix}-redis-${suffix}'
  location: location
  properties: {
    sku: { name: redisSkuName, family: 'C', capacity: redisCapacity }
    enableNonSslPort: false
    minimumTlsVersion: '1.2'
    // TaskTiger's queues must never be evicted to make room.
    redisConfiguration: { 'maxmemory-policy': 'noeviction' }
  }
}

// --- secrets: Key Vault, read by the apps through their identities -----------------------

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: take('${namePrefix}-kv-${suffix}', 24)
  location: location
  properties: {
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 30
  }
}

resource databaseUrlSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'database-url'
  properties: {
    value: 'postgresql://${uriComponent(postgresAdminLogin)}:${uriComponent(postgresAdminPassword)}@${postgres.properties.fullyQualifiedDomainName}:5432/${databaseName}?sslmode=require'
  }
}

resource postgresPasswordSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'postgres-admin-password'
  properties: { value: postgresAdminPassword }
}

resource redisUrlSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'redis-url'
  properties: {
    value: 'rediss://:${uriComponent(redis.listKeys().primaryKey)}@${redis.properties.hostName}:${redis.properties.sslPort}/0'
  }
}

resource secretKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'secret-key'
  properties: { value: apiSecretKey }
}

// --- role assignments: each identity gets only what it uses ------------------------------

resource blobDataApi 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: storage
  name: guid(storage.id, apiIdentity.id, storageBlobDataContributor)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: apiIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource blobDataWorker 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: storage
  name: guid(storage.id, workerIdentity.id, storageBlobDataContributor)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: workerIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// User delegation keys (the SAS the API and the managers mint) are an account-level action.
resource delegatorApi 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: storage
  name: guid(storage.id, apiIdentity.id, storageBlobDelegator)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDelegator)
    principalId: apiIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource delegatorWorker 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: storage
  name: guid(storage.id, workerIdentity.id, storageBlobDelegator)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDelegator)
    principalId: workerIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource pullApi 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: registry
  name: guid(registry.id, apiIdentity.id, acrPull)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPull)
    principalId: apiIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource pullWorker 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: registry
  name: guid(registry.id, workerIdentity.id, acrPull)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPull)
    principalId: workerIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The job container groups pull the compositor image with this identity.
resource pullJob 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: registry
  name: guid(registry.id, jobIdentity.id, acrPull)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPull)
    principalId: jobIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Creating a container group that carries the job identity needs .../assign/action on it.
resource assignJobIdentity 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: jobIdentity
  name: guid(jobIdentity.id, workerIdentity.id, managedIdentityOperator)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', managedIdentityOperator)
    principalId: workerIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource secretsApi 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: vault
  name: guid(vault.id, apiIdentity.id, keyVaultSecretsUser)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: apiIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource secretsWorker 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: vault
  name: guid(vault.id, workerIdentity.id, keyVaultSecretsUser)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: workerIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// --- Container Apps -------------------------------------------------------------------------

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: '${namePrefix}-logs-${suffix}'
  location: location
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
  }
}

resource environment 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: '${namePrefix}-env'
  location: location
  properties: {
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: logs.properties.customerId
        sharedKey: logs.listKeys().primarySharedKey
      }
    }
  }
}

// Settings every process reads (taskmanager/settings.py); secrets come from Key Vault.
var commonEnv = [
  { name: 'DATABASE_URL', secretRef: 'database-url' }
  { name: 'REDIS_URL', secretRef: 'redis-url' }
  { name: 'CLIPYARD_LOG_FORMAT', value: 'json' }
  { name: 'CLIPYARD_STORAGE_BACKEND', value: 'azure' }
  { name: 'CLIPYARD_AZURE_STORAGE_ACCOUNT_URL', value: storage.properties.primaryEndpoints.blob }
  { name: 'CLIPYARD_AZURE_STORAGE_CONTAINER', value: blobContainerName }
  { name: 'CLIPYARD_PRICE_PER_VCPU_HOUR', value: pricePerVcpuHour }
  { name: 'CLIPYARD_PRICE_PER_GB_HOUR', value: pricePerGbHour }
  { name: 'CLIPYARD_MAX_CONCURRENT_CONTAINERS', value: string(maxConcurrentContainers) }
  { name: 'CLIPYARD_MAX_TOTAL_CPU', value: maxTotalCpu }
  { name: 'CLIPYARD_CONTAINER_CREATES_PER_5MIN', value: string(containerCreatesPer5min) }
  { name: 'CLIPYARD_CONTAINER_CREATES_PER_HOUR', value: string(containerCreatesPerHour) }
  { name: 'CLIPYARD_IS_SPOT_DEFAULT_FOR_BATCHES', value: string(isSpotDefaultForBatches) }
]

var secretRefs = [
  { name: 'database-url', keyVaultUrl: databaseUrlSecret.properties.secretUri }
  { name: 'redis-url', keyVaultUrl: redisUrlSecret.properties.secretUri }
]

// The task managers: ACI container groups in the job resource group, the compositor from
// this registry pulled with the job identity.
var workerEnv = concat(commonEnv, [
  // DefaultAzureCredential (blob storage) picks the user-assigned identity by this.
  { name: 'AZURE_CLIENT_ID', value: workerIdentity.properties.clientId }
  { name: 'CLIPYARD_CONTAINER_BACKEND', value: 'aci' }
  { name: 'CLIPYARD_ACI_SUBSCRIPTION_ID', value: subscription().subscriptionId }
  { name: 'CLIPYARD_ACI_RESOURCE_GROUP', value: jobResourceGroupName }
  { name: 'CLIPYARD_ACI_LOCATION', value: location }
  { name: 'CLIPYARD_ACI_MANAGED_IDENTITY_CLIENT_ID', value: workerIdentity.properties.clientId }
  { name: 'CLIPYARD_ACI_REGISTRY_SERVER', value: registry.properties.loginServer }
  { name: 'CLIPYARD_ACI_REGISTRY_IDENTITY', value: jobIdentity.id }
  { name: 'CLIPYARD_COMPOSITOR_IMAGE', value: compositorImage }
])

var workerPools = [
  { name: 'interactive', replicas: interactiveWorkerReplicas }
  { name: 'batch', replicas: batchWorkerReplicas }
]

resource api 'Microsoft.App/containerApps@2024-03-01' = if (deployApps) {
  name: '${namePrefix}-api'
  location: location
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${apiIdentity.id}': {} }
  }
  dependsOn: [pullApi, secretsApi, blobDataApi, delegatorApi, blobContainer, postgresDatabase, postgresAllowAzure]
  properties: {
    managedEnvironmentId: environment.id
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: {
        external: true
        targetPort: 8000
        transport: 'http'
        allowInsecure: false
      }
      registries: [{ server: registry.properties.loginServer, identity: apiIdentity.id }]
      secrets: [
        for ref in concat(secretRefs, [{ name: 'secret-key', keyVaultUrl: secretKeySecret.properties.secretUri }]): {
          name: ref.name
          keyVaultUrl: ref.keyVaultUrl
          identity: apiIdentity.id
        }
      ]
    }
    template: {
      containers: [
        {
          name: 'api'
          image: '${registry.properties.loginServer}/clipyard-api:${imageTag}'
          command: ['python', '-m', 'backend', '--host', '0.0.0.0', '--port', '8000']
          resources: { cpu: json('1.0'), memory: '2Gi' }
          env: concat(commonEnv, [
            { name: 'AZURE_CLIENT_ID', value: apiIdentity.properties.clientId }
            { name: 'CLIPYARD_SECRET_KEY', secretRef: 'secret-key' }
            { name: 'CLIPYARD_ALLOW_SIGNUP', value: string(allowSignup) }
            { name: 'CLIPYARD_SESSION_COOKIE_SECURE', value: 'true' }
            // Container Apps' ingress is the one proxy in front: trust its X-Forwarded-For.
            { name: 'CLIPYARD_API_PROXY_HOPS', value: '1' }
          ])
          probes: [
            {
              type: 'Liveness'
              httpGet: { path: '/healthz', port: 8000 }
              periodSeconds: 15
              failureThreshold: 3
            }
            {
              type: 'Readiness'
              httpGet: { path: '/readyz', port: 8000 }
              periodSeconds: 10
              failureThreshold: 3
            }
          ]
        }
      ]
      scale: {
        minReplicas: apiMinReplicas
        maxReplicas: apiMaxReplicas
        rules: [{ name: 'http', http: { metadata: { concurrentRequests: '200' } } }]
      }
    }
  }
}

// Each pool runs `clipyard worker` (N task managers plus the reconciler; an advisory lock
// keeps the reconciler to one pass at a time). No probe: Container Apps has no exec
// probes; clipyard worker restarts a dead manager itself, and the replica restarts if
// clipyard worker exits.
resource workers 'Microsoft.App/containerApps@2024-03-01' = [
  for pool in workerPools: if (deployApps) {
    name: '${namePrefix}-worker-${pool.name}'
    location: location
    identity: {
      type: 'UserAssigned'
      userAssignedIdentities: { '${workerIdentity.id}': {} }
    }
    dependsOn: [pullWorker, secretsWorker, blobDataWorker, delegatorWorker, assignJobIdentity, pullJob, blobContainer, postgresDatabase, postgresAllowAzure]
    properties: {
      managedEnvironmentId: environment.id
      configuration: {
        activeRevisionsMode: 'Single'
        registries: [{ server: registry.properties.loginServer, identity: workerIdentity.id }]
        secrets: [
          for ref in secretRefs: {
            name: ref.name
            keyVaultUrl: ref.keyVaultUrl
            identity: workerIdentity.id
          }
        ]
      }
      template: {
        // clipyard worker hands its runs over on SIGTERM within 60 s.
        terminationGracePeriodSeconds: 90
        containers: [
          {
            name: 'worker'
            image: '${registry.properties.loginServer}/clipyard-worker:${imageTag}'
            command: ['clipyard']
            args: ['worker', '--queues', pool.name, '--processes', string(managersPerReplica)]
            resources: { cpu: json('1.0'), memory: '2Gi' }
            env: workerEnv
          }
        ]
        scale: {
          minReplicas: pool.replicas
          maxReplicas: pool.replicas
        }
      }
    }
  }
]

// One-shot jobs, started by hand (README, "Deploying"): the schema migration, and loading
// the sample templates. They run as the API's identity: database, blobs, nothing of ACI.
var apiSecretRefs = [
  for ref in secretRefs: {
    name: ref.name
    keyVaultUrl: ref.keyVaultUrl
    identity: apiIdentity.id
  }
]

var oneShots = [
  { name: 'migrate', image: 'clipyard-api', args: ['db', 'upgrade'] }
  { name: 'templates', image: 'clipyard-worker', args: ['templates', 'load'] }
]

resource jobs 'Microsoft.App/jobs@2024-03-01' = [
  for oneShot in oneShots: if (deployApps) {
    name: '${namePrefix}-${oneShot.name}'
    location: location
    identity: {
      type: 'UserAssigned'
      userAssignedIdentities: { '${apiIdentity.id}': {} }
    }
    dependsOn: [pullApi, secretsApi, blobDataApi, delegatorApi, blobContainer, postgresDatabase, postgresAllowAzure]
    properties: {
      environmentId: environment.id
      configuration: {
        triggerType: 'Manual'
        manualTriggerConfig: { parallelism: 1, replicaCompletionCount: 1 }
        replicaTimeout: 1800
        replicaRetryLimit: 1
        registries: [{ server: registry.properties.loginServer, identity: apiIdentity.id }]
        secrets: apiSecretRefs
      }
      template: {
        containers: [
          {
            name: oneShot.name
            image: '${registry.properties.loginServer}/${oneShot.image}:${imageTag}'
            command: ['clipyard']
            args: oneShot.args
            resources: { cpu: json('1.0'), memory: '2Gi' }
            env: concat(commonEnv, [{ name: 'AZURE_CLIENT_ID', value: apiIdentity.properties.clientId }])
          }
        ]
      }
    }
  }
]

output apiUrl string = deployApps ? 'https://${api.properties.configuration.ingress.fqdn}' : ''
output registryLoginServer string = registry.properties.loginServer
output keyVaultName string = vault.name
output storageAccountName string = storage.name
