"""Example python_file hook: log every item published to the blog node.

hookctl loads this file once in a python3 worker and calls hook() for each
event; `item` is an xml.etree.ElementTree.Element of the <item> (or
<retract>) element.
"""


def hook(host, client, item):
    host.log("rebuild requested by item %s on profile %s" % (item.get("id"), client.profile))
