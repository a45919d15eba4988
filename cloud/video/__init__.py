"""Video consultation in the cloud: the call signalling WebSocket, ICE/TURN credentials, the browser module.

Media never passes through the cloud: browsers and the site's edge (edge/video/) connect peer to peer
(or through TURN); the cloud authenticates, authorises and relays the signalling (docs/video.md).
"""
