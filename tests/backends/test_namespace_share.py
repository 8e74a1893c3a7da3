"""namespace_max_pods' fair shares: water-filled over what each master wants, the same on every master."""

from luigi_kubeface.backends.kubernetes.namespace_share import fair_shares


def test_two_masters_that_want_more_than_the_cap_get_half_each():
    assert fair_shares(6, {"a": 10, "b": 10}) == {"a": 3, "b": 3}


def test_what_one_master_does_not_want_goes_to_the_other():
    assert fair_shares(6, {"a": 1, "b": 10}) == {"a": 1, "b": 5}
    assert fair_shares(6, {"a": 0, "b": 2}) == {"a": 0, "b": 2}


def test_a_master_alone_gets_the_whole_cap_and_never_more():
    assert fair_shares(6, {"a": 10}) == {"a": 6}
    assert fair_shares(6, {"a": 4}) == {"a": 4}


def test_the_last_pods_go_in_name_order_so_every_master_computes_the_same_shares():
    shares = fair_shares(6, {"d": 3, "a": 3, "c": 3, "b": 3})
    assert shares == {"a": 2, "b": 2, "c": 1, "d": 1}
    assert fair_shares(5, {"b": 9, "a": 9}) == {"a": 3, "b": 2}
    assert sum(fair_shares(7, {str(i): 5 for i in range(10)}).values()) == 7
