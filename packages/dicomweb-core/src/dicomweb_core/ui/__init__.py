"""The web UI at ``/ui/`` and the same-origin OHIF Viewer at ``/viewer/`` (:mod:`.routes`);
their settings (:mod:`.settings`) and ``dicomweb viewer install`` (:mod:`.install`)."""
