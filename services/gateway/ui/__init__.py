"""The web pages under /ui/: server-rendered (Jinja2) pages over the GraphQL API.

Every page asks the API, in process, with the signed-in person's own access token, so what a
page shows is exactly what that person may read through the API (visibility by team and
clearance, scopes). Charts are drawn on the server as SVG or HTML tables: no chart library,
nothing fetched from another origin. `api.mount_ui` adds the routes and the assets to an app.
"""
