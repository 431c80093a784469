"""`import gi_sdk` must stay light: a device that only runs models has no torch."""
import subprocess
import sys

import pytest


@pytest.mark.parametrize("statement", [
    "import gi_sdk",                                   # the package itself
    "import gi_sdk.codec, gi_sdk.tasks, gi_sdk.result",  # shared vocabulary used at run time
    "from gi_sdk import Session, Result, available_backends",  # resolving the lazy names
    "import gi_sdk.synthetic",                         # the test video needs only numpy + OpenCV
])
def test_import_does_not_load_training_stack(statement):
    code = f"{statement}; import sys; heavy = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]; print(heavy); assert not heavy"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_unknown_attribute_is_an_attribute_error():
    import gi_sdk

    with pytest.raises(AttributeError):
        gi_sdk.does_not_exist


def test_public_preprocess_is_the_function_even_after_its_module_is_imported():
    # a submodule named like a public function would replace it on the package once imported
    import gi_sdk
    import gi_sdk.preprocessing
    from gi_sdk.preprocessing import preprocess

    assert gi_sdk.preprocess is preprocess
