"""graphrec's vertical FL Flower app: the label owner's ServerApp (``graphrec vfl train``) and
the parties' ClientApp of :mod:`graphrec.federated.vertical.flower`."""

from graphrec.commands.vfl import flower_server_app
from graphrec.federated.vertical.flower import party_app

server = flower_server_app()
client = party_app()
