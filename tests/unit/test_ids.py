"""Request and instance ids: FC's shape, time first, so that later ids sort after."""

from __future__ import annotations

import re
import time

from funclet.ids import new_instance_id, new_request_id


def test_a_request_id_has_fcs_shape_and_starts_with_the_time_it_was_made() -> None:
    before = int(time.time())
    request_id = new_request_id()
    after = int(time.time())
    m = re.fullmatch(r"1-([0-9a-f]{8})-[0-9a-f]{8}-[0-9a-f]{12}", request_id)
    assert m is not None, request_id
    assert before <= int(m.group(1), 16) <= after
    assert re.fullmatch(r"c-[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{12}", new_instance_id())


def test_ids_made_in_a_later_second_sort_after_and_never_repeat() -> None:
    first = [new_request_id() for _ in range(2000)]
    time.sleep(1.05)
    later = [new_request_id() for _ in range(2000)]
    assert max(first) < min(later)
    assert len(set(first + later)) == 4000
