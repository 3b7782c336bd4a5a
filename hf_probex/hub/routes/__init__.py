"""The local hub's routes, one `APIRouter` per resource, which `server.create_app` includes in order.

`common` holds what they share: the path convertors, the app's state (`HubState`) and the checks every
repo route makes first (`target`). Each router module says what it serves.
"""
