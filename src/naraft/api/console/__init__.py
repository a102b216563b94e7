"""The web console every node serves at `/nacos/` (docs in README, "Console")."""
