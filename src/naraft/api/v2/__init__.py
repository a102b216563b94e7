"""The Nacos 2.x HTTP Open API (`/nacos/v2/ns/...`, `/nacos/v2/cs/...`) over the services
the v1 API uses; answers are Nacos's `Result` (`naraft.api.errors.v2_result`)."""
