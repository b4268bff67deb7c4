"""Browse the platform with pystac: the STAC view is lazy, and searchable by place and time.

    python examples/02_browse_stac.py

Runs against an embedded emulator unless FUSION_PLATFORM_API_URL is set (see _platform.py).
"""

from __future__ import annotations

from _platform import platform, region_file

import fusion_stac

with platform():
    client = fusion_stac.login()
    org = client.organisation()
    # Something to browse: an upload and a run over the Thames, which the platform cuts into slices.
    thames = client.create_data(org.id, "Thames", [region_file("thames")])
    process = client.new_process(org.id, "Elevation", "Thames elevation").with_input(1, thames).create()
    client.execute(org.id, process.id, wait=True)

    # The whole platform as a pystac Catalog; children and items are fetched only when visited.
    root = fusion_stac.open_catalog(client)
    for organisation in root.get_children():
        print(f"{organisation.title} ({organisation.id})")
        for section in organisation.get_children():
            print(f"  {section.title}: {len(list(section.get_children()))} collection(s)")

    # One run: a Collection of items, one per output file, with projection and raster metadata.
    run = fusion_stac.open_catalog(client, f"fusion://{org.name}/processes/{process.name}/latest")
    print(f"\n{run.title}")
    for item in run.get_items(recursive=True):
        data = item.assets.get("data")
        bands = data.extra_fields.get("raster:bands") if data is not None else None
        top = (bands or [{}])[0].get("statistics", {}).get("maximum")
        summary = f"highest point {top:.0f} m" if top is not None else "statistics of the group"
        print(f"  {item.id[:8]}  {item.properties.get('proj:code') or '':>10}  {data.title if data else '':16}  {summary}")

    # Search items across the platform by bounding box (lon/lat) and free text.
    found = fusion_stac.search(client, bbox=[0.2, 51.4, 0.4, 51.5], text="Thames")
    print(f"\n{len(found)} item(s) intersect 0.2..0.4 E, 51.4..51.5 N:")
    for item in found:
        print(f"  {item.id}  {item.properties.get('proj:code')}  {item.datetime or item.properties.get('start_datetime')}")

    # pystac's own tools work on it, e.g. schema validation (offline, with fusion-stac's schemas).
    from fusion_stac.stac.validation import validate_tree

    print(f"\n{validate_tree(run)} items valid against the STAC schemas")
