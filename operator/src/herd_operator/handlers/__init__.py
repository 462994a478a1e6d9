"""One package per kind (tenant, cognitoclient, sestemplate, application), each holding that
kind's whole behaviour: its package module is what kopf calls and what other kinds may use;
its submodules are its own (the import contracts keep other kinds out of them). common and
adoption are what every kind shares; herd_operator.main only registers."""
