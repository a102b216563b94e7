"""The Nacos 2.x gRPC protocol: payloads, connections, the server and its routes."""
