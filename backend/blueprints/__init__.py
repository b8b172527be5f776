"""The API's blueprints, one per concern."""
