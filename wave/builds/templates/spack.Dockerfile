# Build stage: concretize and install the environment with spack
FROM {{builder_image}} AS builder
COPY spack.yaml /opt/spack-env/spack.yaml
RUN cd /opt/spack-env \
    && spack -e . config add config:install_tree:/opt/software \
    && spack -e . config add concretizer:unify:true \
    && spack -e . config add packages:all:target:[{{spack_arch}}] \
{{base_packages_step}}
    && spack -e . env view enable /opt/views/view \
    && spack -e . concretize -f \
    && spack -e . install --fail-fast \
    && spack gc -y \
    && spack env activate --sh -d /opt/spack-env > /opt/spack-env/activate.sh

# Run stage: only the installed software, on a slim image
FROM {{runner_image}}
COPY --from=builder /opt/spack-env /opt/spack-env
COPY --from=builder /opt/software /opt/software
COPY --from=builder /opt/views /opt/views
RUN { echo '#!/bin/sh' && echo '. /opt/spack-env/activate.sh' && echo 'exec "$@"'; } > /entrypoint.sh \
    && chmod a+x /entrypoint.sh \
    && ln -s /opt/views/view /opt/view
ENTRYPOINT ["/entrypoint.sh"]
CMD ["/bin/bash"]
{{commands}}
