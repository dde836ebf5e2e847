"""graphrec's Flower app: the ServerApp and ClientApp of :mod:`graphrec.federated.flower`."""

from graphrec.federated.flower import deployed_client_app, deployed_server_app

server = deployed_server_app()
client = deployed_client_app()
