# Stand-in for Docker Hub's sonarqube:<version>-community, which no registry this
# machine reaches serves: the same Community Build (the Maven Central zip CI's
# version pins, ci/packages.txt) laid out as the official image lays it out, on the
# machine's Temurin 25 JDK (the official image ships Temurin too). Built by
# `ci/sonarqube.sh image` from a context holding `jdk/` and `sonarqube/`;
# k8s/sonarqube runs it as uid 1000, group 0.
FROM tasks-ci/debian:bookworm-minbase
COPY jdk /opt/java/openjdk
COPY sonarqube /opt/sonarqube
# The four directories the server writes are volumes in k8s/sonarqube; group 0
# may write them, as in the official image, for runtimes that pick the uid.
RUN for d in data extensions logs temp; do chgrp -R 0 "/opt/sonarqube/$d" && chmod -R g+rwX "/opt/sonarqube/$d"; done \
 && ln -s "$(ls /opt/sonarqube/lib/sonar-application-*.jar)" /opt/sonarqube/lib/sonarqube.jar
ENV JAVA_HOME=/opt/java/openjdk \
    SONARQUBE_HOME=/opt/sonarqube \
    PATH=/opt/java/openjdk/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /opt/sonarqube
USER 1000:0
EXPOSE 9000
ENTRYPOINT ["java", "-jar", "lib/sonarqube.jar", "-Dsonar.log.console=true"]
# Kubernetes' probes ask the server over HTTP; the image has no HTTP client.
HEALTHCHECK NONE
