# Two commands do all the set-up (see README.md):
#   make book   execute every chapter and write the HTML book to _build/html/
#   make test   run the tests (unit tests, every chapter in the quick profile, the book build)
#   make student   write the student edition (solutions removed) to student/
VENV    ?= .venv
PYTHON  ?= python3
PROFILE ?= full
DEVICE  ?= auto
PY      := $(VENV)/bin/python

.PHONY: book test student env clean

# the quick run first times every chapter in the quick profile, for the teachers' page
book: env
ifneq ($(PROFILE),quick)
	$(PY) tools/build.py --profile quick --device $(DEVICE) --no-render
endif
	$(PY) tools/build.py --profile $(PROFILE) --device $(DEVICE)

test: env
	$(PY) -m pytest -ra

student: env
	$(PY) tools/student_edition.py --out student

env: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

clean:
	rm -rf _build
