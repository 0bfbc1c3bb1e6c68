"""Progressive delivery on the laptop: ``mercato release SERVICE`` (canary or blue-green).

``run`` drives a release through the supervisor's command channel and Envoy's admin,
``analysis`` judges each step from the instances' metrics, ``gate`` checks the contracts
first. The supervisor's side is ``mercato.runtime.releases``; the edge's weighted clusters
are ``mercato.gateway``'s.
"""
