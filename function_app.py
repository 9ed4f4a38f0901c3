"""The Functions app: builds the FunctionApp and registers one blueprint per concern. Nothing else."""

import azure.functions as func

from functions import admin, alerts, dashboard, events, health, notifications, publish, releases, retraining, silences

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(events.bp)
app.register_functions(health.bp)
app.register_functions(retraining.bp)
app.register_functions(notifications.bp)
app.register_functions(alerts.bp)
app.register_functions(admin.bp)
app.register_functions(dashboard.bp)
app.register_functions(silences.bp)
app.register_functions(releases.bp)
app.register_functions(publish.bp)
