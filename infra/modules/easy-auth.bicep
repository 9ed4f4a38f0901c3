// App Service authentication (Easy Auth, authsettingsV2) for the Function App, with Microsoft
// Entra ID as the provider. It identifies callers; it does not keep anyone out:
//   - unauthenticated requests are let through (AllowAnonymous), so Event Grid deliveries (the
//     eventgrid_extension system key), Azure Monitor action groups and other function-key callers
//     work as before: the Functions host still checks the key of every FUNCTION-level route;
//   - a caller that also presents an Entra ID token (Authorization: Bearer, or the session cookie
//     after /.auth/login/aad) gets X-MS-CLIENT-PRINCIPAL injected, and the app (REACTOR_EASY_AUTH
//     true) reads the app roles `approver` / `operator` from its role claims. Easy Auth strips any
//     X-MS-CLIENT-PRINCIPAL a client sends, so the header cannot be forged once this is on.
// The app registration, its app roles and their assignments are made outside the template
// (docs/deploy.md). Property names: Microsoft.Web/sites/config 'authsettingsV2' (API 2022-09-01+).

@description('Name of the existing Function App.')
param functionAppName string

@description('Application (client) id of the Entra ID app registration that represents the app.')
@minLength(36)
@maxLength(36)
param clientId string

@description('Entra ID tenant of the app registration.')
@minLength(36)
@maxLength(36)
param tenantId string

@description('Name of the app setting holding the client secret (a Key Vault reference), only needed for the browser sign-in flow (/.auth/login/aad) to redeem an authorization code. Empty: tokens presented by callers are validated without one.')
param clientSecretSettingName string = ''

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource auth 'Microsoft.Web/sites/config@2024-04-01' = {
  // Checkov reads every Microsoft.Web/sites/config resource as the 'web' site configuration; this
  // one is 'authsettingsV2', so the site checks below do not apply to it.
  // checkov:skip=CKV_AZURE_13:This resource is App Service Authentication itself (authsettingsV2, platform.enabled true); the check looks for the legacy siteAuthSettings block of a site configuration.
  // checkov:skip=CKV_AZURE_63:Not a site configuration (authsettingsV2). App Service HTTP logs are file-system logs of web apps; the Functions host sends requests, traces and failures to Application Insights.
  // checkov:skip=CKV_AZURE_65:Not a site configuration (authsettingsV2). Detailed error pages are a web app feature; function failures are traced in Application Insights.
  // checkov:skip=CKV_AZURE_66:Not a site configuration (authsettingsV2). Failed request tracing is a web app (IIS) feature; failed invocations are in Application Insights.
  // checkov:skip=CKV_AZURE_80:Not a site configuration (authsettingsV2), and the app is Python 3.11, not .NET.
  // checkov:skip=CKV_AZURE_88:Not a site configuration (authsettingsV2). Flex Consumption reads the package from a blob container and mounts no Azure Files share.
  // checkov:skip=CKV_AZURE_222:Not a site configuration (authsettingsV2); public network access of the site is explained in functionapp.bicep.
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      // Identify, never block: key-only callers (Event Grid, alerts) carry no Entra ID token.
      requireAuthentication: false
      unauthenticatedClientAction: 'AllowAnonymous'
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: clientId
          // The v2.0 issuer of the tenant (login.microsoftonline.com in the public cloud).
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenantId}/v2.0'
          clientSecretSettingName: empty(clientSecretSettingName) ? null : clientSecretSettingName
        }
        validation: {
          // Tokens requested for the app's Application ID URI (az account get-access-token
          // --resource api://<clientId>) or for its client id.
          allowedAudiences: [
            'api://${clientId}'
            clientId
          ]
        }
      }
    }
    login: {
      tokenStore: {
        // Only the principal is needed; no provider tokens are kept for the app to call on.
        enabled: false
      }
    }
  }
}

output enabled bool = auth.properties.platform.enabled
