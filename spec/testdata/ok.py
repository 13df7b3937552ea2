def hook(host, client, item):
    pass
