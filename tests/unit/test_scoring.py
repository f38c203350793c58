from mllmcl.data.scoring import accuracy, is_correct, normalize


def test_normalisation_makes_surface_forms_equal():
    assert normalize("The Red!") == "red"
    assert normalize("Three") == "3"
    assert is_correct("Yes.", "yes")
    assert is_correct("3", "three")


def test_containment_needs_the_only_named_choice():
    choices = ["red", "green", "yellow"]
    assert is_correct("the light is red", "red", choices)
    assert not is_correct("red or green", "red", choices)
    assert not is_correct("", "red", choices)
    assert not is_correct("green", "red", choices)


def test_open_answers_match_whole_words_only():
    assert is_correct("it says cat", "cat")
    assert not is_correct("category", "cat")


def test_accuracy_of_nothing_is_zero():
    assert accuracy([]) == 0.0
    assert accuracy([True, False, True, True]) == 0.75
